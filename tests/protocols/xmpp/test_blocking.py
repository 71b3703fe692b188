"""Which JIDs a blocklist covers (XEP-0191 section 6)."""

from __future__ import annotations

import pytest

from protocols.xmpp.blocking import matches
from protocols.xmpp.jid import parse_jid


@pytest.mark.parametrize(
    ("item", "sender", "blocked"),
    [
        ("bob@example.org", "bob@example.org/phone", True),
        ("bob@example.org", "bob@example.org", True),
        ("bob@example.org/phone", "bob@example.org/phone", True),
        ("bob@example.org/phone", "bob@example.org/desk", False),
        ("bob@example.org/phone", "bob@example.org", False),
        ("example.org", "anyone@example.org/x", True),
        ("example.org", "example.org", True),
        ("example.org/bot", "anyone@example.org/bot", True),
        ("example.org/bot", "anyone@example.org/phone", False),
        ("bob@example.org", "carol@example.org", False),
        ("bob@example.org", "bob@example.com", False),
    ],
)
def test_matching(item: str, sender: str, blocked: bool) -> None:
    assert matches({parse_jid(item)}, parse_jid(sender)) is blocked
