"""Jabber IDs (RFC 7622): ``local@domain/resource``.

Local part and domain are compared case-insensitively (lowercased here, a practical subset
of PRECIS); the resource is kept as given.  Each part is limited to 1023 bytes, and the
local part may not hold the characters RFC 7622 forbids.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

_FORBIDDEN_LOCAL = frozenset("\"&'/:<>@") | frozenset(" \t\r\n\x00")
_MAX_PART = 1023


class InvalidJID(ValueError):
    pass


class JID(NamedTuple):
    local: str
    domain: str
    resource: str

    @property
    def bare(self) -> JID:
        return _bare(self) if self.resource else self

    @property
    def is_bare(self) -> bool:
        return not self.resource

    def __str__(self) -> str:
        text = f"{self.local}@{self.domain}" if self.local else self.domain
        return f"{text}/{self.resource}" if self.resource else text


@functools.lru_cache(maxsize=8192)
def _bare(jid: JID) -> JID:
    return JID(jid.local, jid.domain, "")


@functools.lru_cache(maxsize=8192)
def parse_jid(text: str) -> JID:
    """The JID in ``text``; ``InvalidJID`` when it is malformed.  Cached: the same few
    addresses appear in stanza after stanza."""
    rest, slash, resource = text.partition("/")
    if slash and not resource:
        raise InvalidJID("empty resource")
    local, at, domain = rest.rpartition("@")
    if at and not local:
        raise InvalidJID("empty local part")
    local, domain = local.lower(), domain.lower().rstrip(".")
    if not domain or any(c in " \t\r\n\x00/@" for c in domain):
        raise InvalidJID("bad domain")
    if local and _FORBIDDEN_LOCAL.intersection(local):
        raise InvalidJID("forbidden character in the local part")
    for part in (local, domain, resource):
        if len(part.encode()) > _MAX_PART:
            raise InvalidJID("part too long")
    return JID(local, domain, resource)
