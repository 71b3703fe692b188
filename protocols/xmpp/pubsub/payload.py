"""Item payloads as message bodies and back (SPEC "Where protocols meet", item 4).

An XMPP item's payload element travels as its serialized XML with content type
``application/xml``; a body of that content type appears in XMPP as the element itself.
Any other body is wrapped: ``<data xmlns='urn:broker:payload:0' content-type='…'
encoding='utf-8'>text</data>`` when it is UTF-8 text XML can carry, else with
``encoding='base64'``; ``content-type`` is left out when the message has none.  A wrapper
published from XMPP unwraps into the body and content type it describes, so a body
round-trips through XMPP unchanged.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Callable

from lxml import etree

from protocols.xmpp.stanza import NOT_XML

NS_PAYLOAD = "urn:broker:payload:0"
DATA = f"{{{NS_PAYLOAD}}}data"
XML_TYPE = "application/xml"
#: characters XML 1.0 cannot carry (section 2.2), even escaped
#: the ASCII control bytes among those: a body with one goes out as base64 without being
#: decoded (no multi-byte UTF-8 sequence holds a byte below 0x80)
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
#: bodies are parsed as carefully as a client's stream: no entities, no DTD, no network
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, remove_blank_text=False
)


class PayloadError(ValueError):
    """A wrapper element that does not describe a body (bad encoding or base64)."""


def element_bytes(el: etree._Element) -> bytes:
    """The payload element alone, without namespace declarations of the stream around it."""
    alone = copy.deepcopy(el)
    alone.tail = None
    etree.cleanup_namespaces(alone)
    return etree.tostring(alone, encoding="utf-8")


def to_body(el: etree._Element) -> tuple[bytes, str | None]:
    """An item's payload element as (body, content type)."""
    if el.tag != DATA:
        return element_bytes(el), XML_TYPE
    content_type = el.get("content-type")
    text = el.text or ""
    encoding = el.get("encoding", "utf-8")
    if encoding == "utf-8":
        return text.encode(), content_type
    if encoding == "base64":
        try:
            return base64.b64decode(text, validate=True), content_type
        except binascii.Error:
            raise PayloadError("the data is not base64") from None
    raise PayloadError(f"unknown encoding {encoding!r}")


def to_element(body: bytes, content_type: str | None) -> etree._Element:
    """A message body as an item's payload element."""
    if content_type == XML_TYPE:
        parsed = parse_element(body)
        if parsed is not None:
            return parsed
    data = etree.Element(DATA, nsmap={None: NS_PAYLOAD})
    if content_type is not None:
        data.set("content-type", content_type)
    text = _text(body)
    if text is None or NOT_XML.search(text):
        data.set("encoding", "base64")
        data.text = base64.b64encode(body).decode()
    else:
        data.set("encoding", "utf-8")
        data.text = text
    return data


def to_bytes(body: bytes, content_type: str | None) -> bytes:
    """``to_element``'s element serialized, without building it for wrapped bodies (one
    encoding per notification fan-out, so this is on the hot path)."""
    return encoder(content_type)(body)


def encoder(content_type: str | None) -> Callable[[bytes], bytes]:
    """``to_bytes`` for bodies of one content type (a run of one publisher's messages),
    with what they share made once."""
    if content_type == XML_TYPE:
        return lambda body: element_bytes(to_element(body, content_type))
    head = b'<data xmlns="urn:broker:payload:0"'
    if content_type is not None:
        head += b' content-type="' + _escape(content_type, True).encode() + b'"'
    as_base64, as_text = head + b' encoding="base64">', head + b' encoding="utf-8">'
    b2a_base64, control = binascii.b2a_base64, _CONTROL.search

    def encode(body: bytes) -> bytes:
        text = None if control(body) else _text(body)
        if text is None or NOT_XML.search(text):
            return as_base64 + b2a_base64(body, newline=False) + b"</data>"
        return as_text + _escape(text, False).encode() + b"</data>"

    return encode


def _text(body: bytes) -> str | None:
    """The body as UTF-8 text, None if it is none; without raising for binary bodies
    (an exception costs more than the rest of a notification's encoding)."""
    text = body.decode("utf-8", "replace")
    if "\ufffd" not in text:
        return text
    if b"\xef\xbf\xbd" not in body:
        return None  # a replacement the body did not spell: invalid UTF-8
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None


def _escape(text: str, attribute: bool) -> str:
    """XML escaping as lxml writes it (so both serializations agree)."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    if attribute:
        text = text.replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")
    return text


def parse_element(data: bytes) -> etree._Element | None:
    """One well-formed XML element (no processing instructions or DTD), else None."""
    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return None
    if root.getroottree().docinfo.doctype or not isinstance(root.tag, str):
        return None
    return root
