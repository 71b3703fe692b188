"""The bookkeeping of HTTP file upload (XEP-0363), sans-I/O: which slots are open, which
files are stored, how much each user holds, what has expired.  Every decision takes the
wall-clock time as ``now``, so it is tested without waiting."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from protocols.xmpp.upload.names import new_token, sanitise_filename, valid_content_type

#: seconds a slot may wait for its PUT
SLOT_LIFETIME = 300.0
#: slots one user may have open at once
MAX_OPEN_SLOTS = 50
_SIZE = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Limits:
    max_file_size: int
    #: bytes one user may hold in stored files and open slots; 0 = no limit
    quota: int
    #: seconds a stored file is kept; 0 = for ever
    expire_after: int


@dataclass(frozen=True)
class Slot:
    token: str
    #: what the PUT must carry in its Authorization header (the GET URL is shared)
    secret: str
    owner: str
    filename: str
    size: int
    content_type: str | None
    expires: float


@dataclass(frozen=True)
class StoredFile:
    token: str
    owner: str
    filename: str
    size: int
    content_type: str
    created: float


class SlotRefused(Exception):
    """A slot request the service turns down; ``condition`` is the stanza error."""

    condition = "bad-request"


class FileTooLarge(SlotRefused):
    condition = "not-acceptable"

    def __init__(self, max_file_size: int) -> None:
        super().__init__(f"file too large: the maximum file size is {max_file_size} bytes")
        self.max_file_size = max_file_size


class QuotaReached(SlotRefused):
    condition = "resource-constraint"

    def __init__(self, text: str, retry_at: float | None) -> None:
        super().__init__(text)
        #: when some of the user's space frees up, if it ever does by itself
        self.retry_at = retry_at


class PutRefused(Exception):
    """A PUT the service turns down, with its HTTP status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class Uploads:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.slots: dict[str, Slot] = {}
        #: slots whose PUT is being written to disk
        self.writing: dict[str, Slot] = {}
        #: stored files by token, oldest first
        self.files: dict[str, StoredFile] = {}

    # --- slot requests -------------------------------------------------------------------

    def request(
        self,
        owner: str,
        filename: str | None,
        size: str | None,
        content_type: str | None,
        now: float,
    ) -> Slot:
        """A new slot for ``owner`` from the request's raw attributes, or SlotRefused."""
        if filename is None or (name := sanitise_filename(filename)) is None:
            raise SlotRefused("the request needs a file name")
        if size is None or not _SIZE.fullmatch(size):
            raise SlotRefused("the request needs a size in bytes")
        if content_type is not None and not valid_content_type(content_type.strip()):
            raise SlotRefused("invalid content type")
        length = int(size)
        if length > self.limits.max_file_size:
            raise FileTooLarge(self.limits.max_file_size)
        self._drop_lapsed_slots(now)
        open_slots = [s for s in self.slots.values() if s.owner == owner]
        if len(open_slots) >= MAX_OPEN_SLOTS:
            raise QuotaReached("too many open slots", min(s.expires for s in open_slots))
        quota = self.limits.quota
        if quota and self.usage(owner) + length > quota:
            raise QuotaReached(f"quota of {quota} bytes reached", self._frees_up(owner))
        slot = Slot(
            token=new_token(),
            secret=secrets.token_urlsafe(24),
            owner=owner,
            filename=name,
            size=length,
            content_type=content_type.strip() if content_type else None,
            expires=now + SLOT_LIFETIME,
        )
        self.slots[slot.token] = slot
        return slot

    def usage(self, owner: str) -> int:
        """Bytes ``owner`` holds: stored files and the announced sizes of open slots."""
        stored = sum(f.size for f in self.files.values() if f.owner == owner)
        slots = (*self.slots.values(), *self.writing.values())
        return stored + sum(s.size for s in slots if s.owner == owner)

    def _frees_up(self, owner: str) -> float | None:
        times = [s.expires for s in self.slots.values() if s.owner == owner]
        if self.limits.expire_after:
            after = self.limits.expire_after
            times += [f.created + after for f in self.files.values() if f.owner == owner]
        return min(times, default=None)

    # --- the PUT -------------------------------------------------------------------------

    def check(
        self,
        token: str,
        authorization: str | None,
        content_type: str | None,
        length: int | None,
        now: float,
    ) -> Slot:
        """The open slot a PUT fills, or PutRefused: unknown (404), filled already (409),
        expired (410), without its secret (403), of another content type (415) or length
        (413, 400; unchecked while the length is not known)."""
        slot = self.slots.get(token)
        if slot is None:
            if token in self.files or token in self.writing:
                raise PutRefused(409, "this slot has been filled already")
            raise PutRefused(404, "no such slot")
        if slot.expires <= now:
            del self.slots[token]
            raise PutRefused(410, "the slot has expired")
        if authorization is None or not secrets.compare_digest(
            authorization.encode(), f"Bearer {slot.secret}".encode()
        ):
            raise PutRefused(403, "the slot's Authorization header is missing or wrong")
        wanted = slot.content_type
        if wanted is not None and _media_type(content_type or "") != _media_type(wanted):
            raise PutRefused(415, f"the slot was requested for content type {wanted}")
        if length is not None and length > slot.size:
            raise PutRefused(413, f"the slot was requested for {slot.size} bytes")
        if length is not None and length < slot.size:
            raise PutRefused(400, f"the slot was requested for {slot.size} bytes")
        return slot

    def claim(
        self,
        token: str,
        authorization: str | None,
        content_type: str | None,
        length: int,
        now: float,
    ) -> Slot:
        """``check`` a PUT's whole request and take its slot out of the open ones (a slot
        is filled once; ``add`` or ``abandon`` it next)."""
        slot = self.check(token, authorization, content_type, length, now)
        del self.slots[token]
        self.writing[token] = slot
        return slot

    def filled(self, slot: Slot, content_type: str | None, now: float) -> StoredFile:
        """What a claimed slot becomes once its bytes are stored."""
        if slot.content_type is not None:
            kind = slot.content_type
        elif content_type is not None and valid_content_type(content_type.strip()):
            kind = content_type.strip()
        else:
            kind = "application/octet-stream"
        return StoredFile(slot.token, slot.owner, slot.filename, slot.size, kind, now)

    def add(self, stored: StoredFile) -> None:
        """A stored file: a claimed slot's once written, or one found at start."""
        self.writing.pop(stored.token, None)
        self.files[stored.token] = stored

    def abandon(self, slot: Slot) -> None:
        """A claimed slot whose bytes could not be stored: its space is free again."""
        del self.writing[slot.token]

    # --- the GET and expiry --------------------------------------------------------------

    def file(self, token: str, now: float) -> StoredFile | None:
        """The stored file of ``token``, unless it is unknown or has expired."""
        stored = self.files.get(token)
        if stored is None or self._expired(stored, now):
            return None
        return stored

    def expire(self, now: float) -> list[StoredFile]:
        """Forget expired slots and files; the files, for their bytes to be removed."""
        self._drop_lapsed_slots(now)
        gone = [f for f in self.files.values() if self._expired(f, now)]
        for stored in gone:
            del self.files[stored.token]
        return gone

    def _drop_lapsed_slots(self, now: float) -> None:
        for token in [t for t, s in self.slots.items() if s.expires <= now]:
            del self.slots[token]

    def _expired(self, stored: StoredFile, now: float) -> bool:
        after = self.limits.expire_after
        return bool(after) and stored.created + after <= now


def _media_type(content_type: str) -> str:
    """``type/subtype`` without parameters (HTTP libraries add a charset of their own)."""
    return content_type.split(";", 1)[0].strip().lower()
