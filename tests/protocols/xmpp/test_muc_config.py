"""Room configuration forms (muc#roomconfig), the room store across a reload, and the
history request of a join presence."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from broker.store.memory import MemoryStore
from protocols.xmpp import forms
from protocols.xmpp.forms import FormError
from protocols.xmpp.jid import JID, parse_jid
from protocols.xmpp.muc import config
from protocols.xmpp.muc.config import RoomConfig, UnacceptableValue
from protocols.xmpp.muc.room import NS_MUC, JoinRequest, Occupant, Room
from protocols.xmpp.muc.store import RoomStore
from protocols.xmpp.stanza import element, serialize

ROOM = JID("vault", "conference.localhost", "")


def _submit(*fields: tuple[str, list[str]]) -> etree._Element:
    x = etree.Element(forms.X, type="submit")
    for var, values in fields:
        el = etree.SubElement(x, forms.FIELD, var=var)
        for value in values:
            etree.SubElement(el, forms.VALUE).text = value
    return x


def test_the_form_submitted_back_as_it_was_changes_nothing() -> None:
    current = RoomConfig(name="Vault", persistent=True, max_users=12, allow_pm="moderators")
    form = config.form(current)
    submitted = _submit(
        *(
            (f.get("var"), [v.text or "" for v in f.iterchildren(forms.VALUE)])
            for f in form.iterchildren(forms.FIELD)
        )
    )
    assert config.apply(current, submitted) == current


def test_submitted_values_change_the_config() -> None:
    changed = config.apply(
        RoomConfig(),
        _submit(
            ("FORM_TYPE", [config.NS_ROOMCONFIG]),
            ("muc#roomconfig_roomname", ["Vault"]),
            ("muc#roomconfig_persistentroom", ["true"]),
            ("muc#roomconfig_membersonly", ["1"]),
            ("muc#roomconfig_passwordprotectedroom", ["1"]),
            ("muc#roomconfig_roomsecret", ["pw"]),
            ("muc#roomconfig_whois", ["anyone"]),
            ("muc#roomconfig_maxusers", ["none"]),
            ("muc#maxhistoryfetch", ["7"]),
            ("muc#roomconfig_enablearchiving", ["0"]),
            ("x-unknown-field", ["ignored"]),
        ),
    )
    assert changed == RoomConfig(
        name="Vault",
        persistent=True,
        members_only=True,
        password_protected=True,
        password="pw",
        whois="anyone",
        max_users=0,
        history_length=7,
        mam=False,
    )


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ((("FORM_TYPE", ["urn:other"]),), FormError),
        ((("muc#roomconfig_persistentroom", ["yes"]),), FormError),
        ((("muc#roomconfig_roomname", ["a", "b"]),), FormError),
        ((("muc#roomconfig_maxusers", ["-3"]),), UnacceptableValue),
        ((("muc#roomconfig_historylength", ["100000"]),), UnacceptableValue),
        ((("muc#roomconfig_allowpm", ["everybody"]),), UnacceptableValue),
        ((("muc#roomconfig_passwordprotectedroom", ["1"]),), UnacceptableValue),
    ],
)
def test_bad_values(fields: tuple[tuple[str, list[str]], ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        config.apply(RoomConfig(), _submit(*fields))


VARS = [
    "FORM_TYPE",
    "muc#roomconfig_roomname",
    "muc#roomconfig_persistentroom",
    "muc#roomconfig_maxusers",
    "muc#roomconfig_whois",
    "muc#roomconfig_allowpm",
    "muc#roomconfig_historylength",
    "mam",
    "other",
]
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)


@given(
    st.lists(st.tuples(st.sampled_from(VARS), st.lists(_TEXT, max_size=3)), max_size=6),
    st.sampled_from(["submit", "form", "cancel", "result", "nonsense"]),
)
def test_any_submission_gives_a_config_or_a_form_error(
    fields: list[tuple[str, list[str]]], kind: str
) -> None:
    x = _submit(*fields)
    x.set("type", kind)
    try:
        result = config.apply(RoomConfig(), x)
    except FormError:
        return
    assert 0 <= result.max_users <= config.MAX_USERS
    assert result.whois in config.WHOIS and result.allow_pm in config.ALLOW_PM


def test_join_request_reads_password_and_history() -> None:
    x = etree.fromstring(
        f"<x xmlns='{NS_MUC}'><password>pw</password>"
        "<history maxstanzas='5' maxchars='x' seconds='-3' since='2020-01-01T00:00:00Z'/></x>"
    )
    request = JoinRequest.parse(x)
    assert (request.password, request.maxstanzas, request.maxchars, request.seconds) == (
        "pw",
        5,
        None,
        0,
    )
    assert request.since == 1577836800.0
    assert JoinRequest.parse(None) == JoinRequest()


class Events:
    def __init__(self, store: RoomStore) -> None:
        self.store = store

    def saved(self, room: Room) -> None:
        self.store.save(room)

    def logged(self, room: Room, record: object, dropped: object) -> None:
        self.store.log(room, record, dropped)  # type: ignore[arg-type]

    def said(self, room: Room, occupant: Occupant, body: str) -> None:
        pass

    def closed(self, room: Room) -> None:
        self.store.forget(room)


def _groupchat(body: str) -> etree._Element:
    message = element("message", type="groupchat")
    etree.SubElement(message, "{jabber:client}body").text = body
    return message


def test_a_persistent_room_reloads_with_its_log_and_a_temporary_one_does_not() -> None:
    memory = MemoryStore()
    store = RoomStore(memory, {})
    events = Events(store)
    vault = Room(ROOM, events, RoomConfig(persistent=True), {"alice@localhost": "owner"})
    alice = parse_jid("alice@localhost/desk")
    vault.presence(alice, "alice", element("presence"), lambda data: None, serialize)
    vault.groupchat(alice, _groupchat("said before it was stored"), serialize)
    store.save(vault)
    vault.groupchat(alice, _groupchat("said after"), serialize)
    vault.admin_set(
        alice,
        etree.fromstring(
            "<query xmlns='http://jabber.org/protocol/muc#admin'>"
            "<item affiliation='member' jid='bob@localhost'/></query>"
        ),
    )
    temporary = Room(JID("brief", ROOM.domain, ""), events)
    store.save(temporary)
    reloaded = RoomStore(memory, trio.run(memory.open).kv)
    assert list(reloaded.loaded) == ["vault"]
    stored = reloaded.loaded["vault"]
    assert stored.config == RoomConfig(persistent=True)
    assert stored.affiliations == {"alice@localhost": "owner", "bob@localhost": "member"}
    assert [r.seq for r in stored.log] == [1, 2]
    assert b"said after" in stored.log[1].stanza
    vault.destroy("")
    assert trio.run(memory.open).kv == {}
