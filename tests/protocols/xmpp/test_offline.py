"""Offline storage (XEP-0160): what is kept, the per-user cap, and reloading from the
store's records."""

from __future__ import annotations

import trio
from lxml import etree

from broker.store.memory import MemoryStore
from protocols.xmpp import offline
from protocols.xmpp.offline import OfflineStore


def _message(children: str) -> etree._Element:
    return etree.fromstring(f"<message xmlns='jabber:client' type='chat'>{children}</message>")


def _stored(store: MemoryStore) -> dict[str, bytes]:
    """The store's records as a restart would load them."""
    return trio.run(store.open).kv


def test_only_messages_with_content_are_worth_storing() -> None:
    chatstates = "xmlns='http://jabber.org/protocol/chatstates'"
    assert offline.worth_storing(_message("<body>hi</body>"))
    assert offline.worth_storing(_message("<x xmlns='jabber:x:oob'/>"))
    assert not offline.worth_storing(_message(f"<composing {chatstates}/>"))
    assert not offline.worth_storing(_message("<body>hi</body><no-store xmlns='urn:xmpp:hints'/>"))


def test_delay_is_added() -> None:
    data = offline.with_delay(b"<message xmlns='jabber:client'><body>hi</body></message>", "d", 0)
    delay = etree.fromstring(data).find(f"{{{offline.NS_DELAY}}}delay")
    assert delay is not None
    assert (delay.get("from"), delay.get("stamp")) == ("d", "1970-01-01T00:00:00.000Z")


def test_messages_survive_a_reload_in_order_and_are_deleted_when_taken() -> None:
    store = MemoryStore()
    waiting = OfflineStore(store, {}, "localhost")
    for n in range(12):  # past 10, so string order of keys must still be arrival order
        assert waiting.add("bob", f"<m{n}/>".encode())
    reloaded = OfflineStore(store, _stored(store), "localhost")
    assert list(reloaded.take("bob")) == [f"<m{n}/>".encode() for n in range(12)]
    assert _stored(store) == {}
    assert list(reloaded.take("bob")) == []


def test_storage_per_user_is_capped() -> None:
    waiting = OfflineStore(MemoryStore(), {}, "localhost")
    for _ in range(offline.MAX_PER_USER):
        assert waiting.add("bob", b"<m/>")
    assert not waiting.add("bob", b"<m/>")
    assert waiting.add("carol", b"<m/>")
    assert waiting.count("bob") == offline.MAX_PER_USER
