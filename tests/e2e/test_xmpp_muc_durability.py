"""Persistent rooms survive ``kill -9`` and a restart: configuration, affiliations,
subject and the room's archive (SPEC "Guarantees"); temporary and destroyed rooms do not
come back.  The owner's last change is confirmed only once stored, so the test kills the
broker right after that answer."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from .muc import (
    NS_ADMIN,
    NS_OWNER,
    SERVICE,
    admin,
    archived_bodies,
    create,
    iq,
    join,
    join_error,
    login,
    next_body,
    owner_set,
    room_jid,
    say,
    submit,
)
from .xmpp import XmppClients
from .xmpp_sync import wait_until_stored

VAULT = room_jid("vault")


def test_persistent_room_with_affiliations_survives_a_crash(xmpp: XmppClients) -> None:
    alice, bob = login(xmpp, "alice"), login(xmpp, "bob")
    create(alice, "vault", "alice", persistentroom="1", membersonly="1", roomname="Vault")
    create(alice, "fleeting", "alice")
    subjects = alice.watch("groupchat_subject")
    alice.run(alice.client.plugin["xep_0045"].set_subject, VAULT, "Keep it safe")
    subjects.get(timeout=10)
    iq(alice, VAULT, "set", admin(alice, VAULT, jid="bob@localhost", affiliation="member"))
    join(bob, VAULT, "bob")
    say(bob, VAULT, "first words")
    assert next_body(alice)["body"] == "first words"
    say(alice, VAULT, "second words")
    assert next_body(alice)["body"] == "second words"
    # the last change's answer comes after the store's commit, which covers all before
    iq(alice, VAULT, "set", admin(alice, VAULT, jid="carol@localhost", affiliation="outcast"))
    xmpp.broker.kill()
    xmpp.broker.start()

    bob, carol = login(xmpp, "bob", "again"), login(xmpp, "carol", "again")
    rooms = bob.call(bob.client.plugin["xep_0030"].get_items, jid=SERVICE)
    assert [(str(j), name) for j, _, name in rooms["disco_items"]["items"]] == [(VAULT, "Vault")]
    self_presence, subject, _, history = join(bob, VAULT, "bob")
    assert self_presence["muc"]["affiliation"] == "member"
    assert subject["subject"] == "Keep it safe"
    assert [m["body"] for m in history] == ["first words", "second words"]
    assert archived_bodies(bob, VAULT) == ["first words", "second words"]
    assert join_error(carol, VAULT, "carol") == "forbidden"
    alice = login(xmpp, "alice", "again")
    join(alice, VAULT, "alice")
    owners = iq(alice, VAULT, "get", admin(alice, VAULT, affiliation="owner"))
    assert [i.get("jid") for i in owners.xml.findall(f".//{{{NS_ADMIN}}}item")] == [
        "alice@localhost"
    ]
    form = alice.call(alice.client.plugin["xep_0045"].get_room_config, VAULT).get_values()
    assert form["muc#roomconfig_membersonly"] is True
    with pytest.raises(IqError) as refused:
        bob.call(bob.client.plugin["xep_0030"].get_info, jid=room_jid("fleeting"))
    assert refused.value.condition == "item-not-found"


def test_destroyed_and_unpersisted_rooms_stay_gone(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice")
    create(alice, "vault", "alice", persistentroom="1")
    create(alice, "attic", "alice", persistentroom="1")
    say(alice, VAULT, "soon gone")
    next_body(alice)
    owner_set(alice, VAULT, ET.Element(f"{{{NS_OWNER}}}destroy"))
    create(alice, "cellar", "alice", persistentroom="1")
    submit(alice, room_jid("cellar"), persistentroom="0")
    wait_until_stored(xmpp.broker)
    xmpp.broker.kill()
    xmpp.broker.start()
    bob = login(xmpp, "bob")
    rooms = bob.call(bob.client.plugin["xep_0030"].get_items, jid=SERVICE)
    assert [str(j) for j, _, _ in rooms["disco_items"]["items"]] == [room_jid("attic")]
