"""What may come from a client and end up in a path, a URL or an HTTP header: file names
(sanitised to one harmless path component), content types, and the slots' tokens."""

from __future__ import annotations

import re
import secrets
import unicodedata

#: a token names an upload's directory and URL: 32 characters of base64url
TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
#: bytes a stored file name may take (file systems allow 255)
MAX_NAME_BYTES = 200
#: bytes of a file name's extension kept when a long name is shortened
MAX_EXTENSION_BYTES = 16
_FORBIDDEN = frozenset('/\\:*?"<>|')
_MIME_TOKEN = r"[A-Za-z0-9!#$&^_.+-]{1,127}"
CONTENT_TYPE = re.compile(
    rf"{_MIME_TOKEN}/{_MIME_TOKEN}"
    rf'(?: *; *{_MIME_TOKEN}=(?:{_MIME_TOKEN}|"[^"\\\x00-\x1f\x7f]*"))*'
)
MAX_CONTENT_TYPE = 255


def new_token() -> str:
    """An unguessable token (192 random bits)."""
    return secrets.token_urlsafe(24)


def sanitise_filename(name: str) -> str | None:
    """``name`` as one harmless path component: its last segment after any ``/`` or
    ``\\``, control and format characters and those Windows forbids replaced by ``_``,
    no leading dots (nor ``.``/``..``, nor a clash with the hidden metadata file), at most
    ``MAX_NAME_BYTES`` of UTF-8.  None when nothing is left of it."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join("_" if _unsafe(char) else char for char in name)
    name = name.lstrip(". ").rstrip(" ")
    if not name:
        return None
    return _shorten(name)


def _unsafe(char: str) -> bool:
    return (
        char in _FORBIDDEN
        or unicodedata.category(char)[0] == "C"
        or (char.isspace() and char != " ")
    )


def _shorten(name: str) -> str:
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension.encode()) > MAX_EXTENSION_BYTES:
        stem, extension = name, ""
    suffix = f".{extension}" if extension else ""
    room = MAX_NAME_BYTES - len(suffix.encode())
    return stem.encode()[:room].decode(errors="ignore").rstrip(" ") + suffix


def valid_content_type(text: str) -> bool:
    """A MIME type (with parameters) that is safe to send back as a header value."""
    return len(text) <= MAX_CONTENT_TYPE and CONTENT_TYPE.fullmatch(text) is not None
