"""Message archives (XEP-0313): what is archived, stanza-ids, the per-user bound, reloading,
and the query filters."""

from __future__ import annotations

import pytest
import trio
from lxml import etree

from broker.store.memory import MemoryStore
from protocols.xmpp import archive, mam
from protocols.xmpp.archive import Archive
from protocols.xmpp.jid import JID


def _message(kind: str, children: str = "<body>hi</body>") -> etree._Element:
    return etree.fromstring(f"<message xmlns='jabber:client' type='{kind}'>{children}</message>")


def test_one_to_one_messages_with_a_body_are_archived() -> None:
    assert archive.archivable(_message("chat"))
    assert archive.archivable(_message("normal"))
    assert not archive.archivable(_message("headline"))
    assert not archive.archivable(_message("groupchat"))
    assert not archive.archivable(_message("chat", "<active xmlns='x'/>"))
    assert not archive.archivable(_message("chat", "<body/><no-store xmlns='urn:xmpp:hints'/>"))


def test_stanza_id_is_appended_and_a_forged_one_replaced() -> None:
    bob = JID("bob", "d", "")
    el = _message("chat")
    data = archive.with_stanza_id(el, etree.tostring(el), bob, "real", etree.tostring)
    assert _stanza_ids(etree.fromstring(data)) == [("bob@d", "real")]
    forged = f"<body>hi</body><stanza-id xmlns='{archive.NS_SID}' by='bob@d' id='forged'/>"
    el = _message("chat", forged)
    data = archive.with_stanza_id(el, etree.tostring(el), bob, "real", etree.tostring)
    assert _stanza_ids(etree.fromstring(data)) == [("bob@d", "real")]


def _stanza_ids(el: etree._Element) -> list[tuple[str | None, str | None]]:
    return [(s.get("by"), s.get("id")) for s in el.findall(archive.STANZA_ID)]


def test_archive_is_bounded_and_survives_a_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_PER_USER", 4)
    monkeypatch.setattr(archive, "CHUNK", 2)
    store = MemoryStore()
    kept = Archive(store, {})
    ids = []
    for n in range(9):
        ids.append(kept.add("alice", "bob@d/pc", f"<m{n}/>".encode()))
        if n in (2, 3, 8):  # flushes of one, several and chunk-crossing runs of copies
            kept.flush()
    assert [r.id for r in kept.records("alice")] == ids[4:]  # whole chunks of the oldest go
    reloaded = Archive(store, trio.run(store.open).kv)
    records = reloaded.records("alice")
    assert [(r.id, r.stanza, r.with_bare) for r in records] == [
        (ids[n], f"<m{n}/>".encode(), "bob@d") for n in range(4, 9)
    ]
    assert reloaded.add("alice", "bob@d", b"<m9/>") not in ids
    reloaded.flush()
    assert len(trio.run(store.open).kv) == 2  # the chunks of copies 7-8 and 9-10


def _form(fields: str) -> etree._Element:
    form_type = f"<field var='FORM_TYPE'><value>{archive.NS_MAM}</value></field>"
    return etree.fromstring(f"<x xmlns='jabber:x:data' type='submit'>{form_type}{fields}</x>")


def _field(name: str, value: str) -> str:
    return f"<field var='{name}'><value>{value}</value></field>"


def test_filters() -> None:
    record = archive.Record(1, "id", 1000.0, "bob@d/pc", b"")
    assert mam.parse_filter(None).matches(record)
    assert mam.parse_filter(_form(_field("with", "bob@d"))).matches(record)
    assert mam.parse_filter(_form(_field("with", "bob@d/pc"))).matches(record)
    assert not mam.parse_filter(_form(_field("with", "bob@d/phone"))).matches(record)
    assert not mam.parse_filter(_form(_field("with", "carol@d"))).matches(record)
    window = _field("start", "1970-01-01T00:16:40Z") + _field("end", "1970-01-01T00:16:40Z")
    assert mam.parse_filter(_form(window)).matches(record)
    assert not mam.parse_filter(_form(_field("start", "1970-01-01T00:16:41Z"))).matches(record)


@pytest.mark.parametrize(
    "fields",
    [_field("start", "yesterday"), _field("end", "1970-01-01T00:00:00"), _field("color", "red")],
)
def test_bad_filters_are_refused(fields: str) -> None:
    with pytest.raises(mam.BadQuery):
        mam.parse_filter(_form(fields))
