"""Multi-user chat (XEP-0045) with three real slixmpp occupants: creating rooms, joining,
talking, moderating, configuring, history, subject, private messages, the room archive
(XEP-0313), self-ping (XEP-0410) and room disco."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from .muc import (
    NS_ADMIN,
    NS_DATA,
    NS_DELAY,
    NS_MAM,
    NS_OWNER,
    NS_PING,
    NS_SID,
    NS_USER,
    SERVICE,
    admin,
    archive,
    codes,
    create,
    iq,
    iq_error,
    join,
    join_error,
    leave,
    login,
    next_body,
    next_error,
    next_presence_of,
    next_status,
    no_more_bodies,
    owner_set,
    presences,
    room_jid,
    say,
    submit,
)
from .xmpp import XmppClient, XmppClients
from .xmpp_sync import round_trip

LOBBY = room_jid("lobby")


def _three(xmpp: XmppClients, **config: str) -> tuple[XmppClient, XmppClient, XmppClient]:
    """alice owns ``lobby`` (configured with ``config``), bob and carol have joined."""
    alice, bob, carol = (login(xmpp, user) for user in ("alice", "bob", "carol"))
    create(alice, "lobby", "alice", **config)
    join(bob, LOBBY, "bob")
    join(carol, LOBBY, "carol")
    return alice, bob, carol


def test_groupchat_is_reflected_to_every_occupant_with_a_stanza_id(xmpp: XmppClients) -> None:
    alice, bob, carol = _three(xmpp)
    say(bob, LOBBY, "hello room")
    for client in (alice, bob, carol):
        message = next_body(client)
        assert (str(message["from"]), message["body"]) == (f"{LOBBY}/bob", "hello room")
        sid = message.xml.find(f"{{{NS_SID}}}stanza-id")
        assert sid is not None and sid.get("by") == LOBBY and sid.get("id")


def test_join_presence_lists_occupants_and_status_codes(xmpp: XmppClients) -> None:
    alice, bob, carol = _three(xmpp, whois="anyone")
    watched = presences(alice)
    leave(bob, LOBBY, "bob")
    gone = next_presence_of(watched, f"{LOBBY}/bob")
    assert gone["type"] == "unavailable" and gone["muc"]["role"] == "none"
    self_presence, subject, occupants, _ = join(bob, LOBBY, "bobby")
    assert {110, 100, 170} <= codes(self_presence)
    assert self_presence["muc"]["affiliation"] == "none"
    assert self_presence["muc"]["role"] == "participant"
    seen = {str(p["from"]): p["muc"]["role"] for p in occupants}
    assert seen[f"{LOBBY}/alice"] == "moderator" and seen[f"{LOBBY}/carol"] == "participant"
    arrived = next_presence_of(watched, f"{LOBBY}/bobby")
    assert str(arrived["muc"]["jid"]) == "bob@localhost/desk"  # non-anonymous room
    assert not subject["subject"]


def test_semi_anonymous_room_shows_real_jids_to_moderators_only(xmpp: XmppClients) -> None:
    alice, bob, carol = _three(xmpp)
    to_alice, to_carol = presences(alice), presences(carol)
    bob.run(bob.client.send_presence, pto=f"{LOBBY}/bob", pstatus="away for lunch")
    assert str(next_presence_of(to_alice, f"{LOBBY}/bob")["muc"]["jid"]) == "bob@localhost/desk"
    seen_by_carol = next_presence_of(to_carol, f"{LOBBY}/bob")
    assert seen_by_carol["status"] == "away for lunch"
    assert not seen_by_carol["muc"]["jid"]


def test_nick_conflict_is_refused(xmpp: XmppClients) -> None:
    alice, bob = login(xmpp, "alice"), login(xmpp, "bob")
    create(alice, "lobby", "alice")
    assert join_error(bob, LOBBY, "alice") == "conflict"
    join(bob, LOBBY, "bob")


def test_nick_change_announces_303(xmpp: XmppClients) -> None:
    alice, bob, _ = _three(xmpp)
    watched = presences(alice)
    bob.run(bob.client.send_presence, pto=f"{LOBBY}/robert")
    left = next_presence_of(watched, f"{LOBBY}/bob")
    assert left["type"] == "unavailable" and 303 in codes(left)
    assert left.xml.find(f"{{{NS_USER}}}x/{{{NS_USER}}}item").get("nick") == "robert"
    assert next_presence_of(watched, f"{LOBBY}/robert")["type"] == "available"
    say(bob, LOBBY, "renamed")
    assert str(next_body(alice)["from"]) == f"{LOBBY}/robert"


def test_reserved_room_is_locked_until_its_owner_submits_the_form(xmpp: XmppClients) -> None:
    alice, bob = login(xmpp, "alice"), login(xmpp, "bob")
    join(alice, room_jid("reserved"), "alice")
    form = alice.call(alice.client.plugin["xep_0045"].get_room_config, room_jid("reserved"))
    fields = form.get_values()
    for var in (
        "muc#roomconfig_roomname",
        "muc#roomconfig_persistentroom",
        "muc#roomconfig_membersonly",
        "muc#roomconfig_passwordprotectedroom",
        "muc#roomconfig_roomsecret",
        "muc#roomconfig_moderatedroom",
        "muc#roomconfig_whois",
        "muc#roomconfig_maxusers",
        "muc#roomconfig_historylength",
        "muc#roomconfig_allowpm",
        "mam",
    ):
        assert var in fields, var
    assert join_error(bob, room_jid("reserved"), "bob") == "item-not-found"
    submit(alice, room_jid("reserved"), roomname="Planning", roomdesc="Where plans are made")
    join(bob, room_jid("reserved"), "bob")
    info = bob.call(bob.client.plugin["xep_0030"].get_info, jid=room_jid("reserved"))
    assert ("conference", "text", None, "Planning") in info["disco_info"]["identities"]
    roominfo = info["disco_info"].xml.find(f"{{{NS_DATA}}}x")
    values = {
        f.get("var"): f.findtext(f"{{{NS_DATA}}}value")
        for f in roominfo.iter(f"{{{NS_DATA}}}field")
    }
    assert values["muc#roominfo_description"] == "Where plans are made"
    assert values["muc#roominfo_occupants"] == "2"


def test_config_change_reaches_occupants_and_the_form(xmpp: XmppClients) -> None:
    alice, bob, _ = _three(xmpp)
    submit(alice, LOBBY, roomname="Lobby", moderatedroom="1", historylength="5")
    assert 104 in next_status(bob)
    form = alice.call(alice.client.plugin["xep_0045"].get_room_config, LOBBY).get_values()
    assert form["muc#roomconfig_roomname"] == "Lobby"
    assert form["muc#roomconfig_moderatedroom"] is True
    assert form["muc#roomconfig_historylength"] == "5"
    assert iq_error(bob, LOBBY, "get", ET.Element(f"{{{NS_OWNER}}}query")) == "forbidden"


def test_moderated_room_roles_voice_and_kick(xmpp: XmppClients) -> None:
    alice, bob, carol = _three(xmpp, moderatedroom="1")
    say(carol, LOBBY, "may I speak?")
    assert next_error(carol)["error"]["condition"] == "forbidden"
    iq(alice, LOBBY, "set", admin(alice, LOBBY, nick="carol", role="participant"))
    say(carol, LOBBY, "thank you")
    assert next_body(alice)["body"] == "thank you"
    moderators = iq(alice, LOBBY, "get", admin(alice, LOBBY, role="moderator"))
    items = moderators.xml.findall(f".//{{{NS_ADMIN}}}item")
    assert [item.get("nick") for item in items] == ["alice"]
    kick = admin(bob, LOBBY, nick="carol", role="none")
    assert iq_error(bob, LOBBY, "set", kick) == "forbidden"  # bob is no moderator
    to_bob, to_carol = presences(bob), presences(carol)
    iq(alice, LOBBY, "set", admin(alice, LOBBY, nick="carol", role="none", reason="spam"))
    kicked = next_presence_of(to_carol, f"{LOBBY}/carol")
    assert kicked["type"] == "unavailable" and {307, 110} <= codes(kicked)
    assert kicked.xml.find(f".//{{{NS_USER}}}reason").text == "spam"
    seen = next_presence_of(to_bob, f"{LOBBY}/carol")
    assert 307 in codes(seen) and 110 not in codes(seen)
    say(carol, LOBBY, "still here?")
    assert next_error(carol)["error"]["condition"] == "not-acceptable"


def test_an_owner_cannot_be_kicked_by_a_moderator_admin(xmpp: XmppClients) -> None:
    alice, bob, _ = _three(xmpp)
    iq(alice, LOBBY, "set", admin(alice, LOBBY, jid="bob@localhost", affiliation="admin"))
    kick = admin(bob, LOBBY, nick="alice", role="none")
    assert iq_error(bob, LOBBY, "set", kick) == "not-allowed"
    grant = admin(bob, LOBBY, jid="carol@localhost", affiliation="owner")
    assert iq_error(bob, LOBBY, "set", grant) == "not-allowed"


def test_ban_removes_and_keeps_out(xmpp: XmppClients) -> None:
    alice, bob, carol = _three(xmpp)
    to_bob, to_carol = presences(bob), presences(carol)
    ban = admin(alice, LOBBY, jid="carol@localhost", affiliation="outcast", reason="rude")
    iq(alice, LOBBY, "set", ban)
    banned = next_presence_of(to_carol, f"{LOBBY}/carol")
    assert banned["type"] == "unavailable" and {301, 110} <= codes(banned)
    assert banned["muc"]["affiliation"] == "outcast"
    assert 301 in codes(next_presence_of(to_bob, f"{LOBBY}/carol"))
    assert join_error(carol, LOBBY, "carol") == "forbidden"
    outcasts = iq(alice, LOBBY, "get", admin(alice, LOBBY, affiliation="outcast"))
    jids = [item.get("jid") for item in outcasts.xml.findall(f".//{{{NS_ADMIN}}}item")]
    assert jids == ["carol@localhost"]
    assert iq_error(bob, LOBBY, "get", admin(bob, LOBBY, affiliation="outcast")) == "forbidden"
    iq(alice, LOBBY, "set", admin(alice, LOBBY, jid="carol@localhost", affiliation="none"))
    join(carol, LOBBY, "carol")


def test_members_only_room_refuses_non_members(xmpp: XmppClients) -> None:
    alice, bob = login(xmpp, "alice"), login(xmpp, "bob")
    create(alice, "club", "alice", membersonly="1")
    assert join_error(bob, room_jid("club"), "bob") == "registration-required"
    iq(alice, room_jid("club"), "set", admin(alice, "", jid="bob@localhost", affiliation="member"))
    join(bob, room_jid("club"), "bob")
    members = iq(alice, room_jid("club"), "get", admin(alice, "", affiliation="member"))
    assert [i.get("jid") for i in members.xml.findall(f".//{{{NS_ADMIN}}}item")] == [
        "bob@localhost"
    ]


def test_password_protected_room(xmpp: XmppClients) -> None:
    alice, bob = login(xmpp, "alice"), login(xmpp, "bob")
    create(alice, "secret", "alice", passwordprotectedroom="1", roomsecret="s3same")
    assert join_error(bob, room_jid("secret"), "bob") == "not-authorized"
    assert join_error(bob, room_jid("secret"), "bob", password="wrong") == "not-authorized"
    join(bob, room_jid("secret"), "bob", password="s3same")
    info = bob.call(bob.client.plugin["xep_0030"].get_info, jid=room_jid("secret"))
    assert "muc_passwordprotected" in info["disco_info"]["features"]


def test_max_users_refuses_one_more(xmpp: XmppClients) -> None:
    alice, bob, carol = (login(xmpp, user) for user in ("alice", "bob", "carol"))
    create(alice, "small", "alice", maxusers="2")
    join(bob, room_jid("small"), "bob")
    assert join_error(carol, room_jid("small"), "carol") == "service-unavailable"


def test_history_on_join_honours_maxstanzas_maxchars_and_seconds(xmpp: XmppClients) -> None:
    alice, bob, carol = (login(xmpp, user) for user in ("alice", "bob", "carol"))
    create(alice, "lobby", "alice")
    for n in range(3):
        say(alice, LOBBY, f"line {n}")
    for _ in range(3):
        next_body(alice)
    _, _, _, history = join(bob, LOBBY, "bob", maxstanzas=2)
    assert [m["body"] for m in history] == ["line 1", "line 2"]
    delay = history[0].xml.find(f"{{{NS_DELAY}}}delay")
    assert delay is not None and delay.get("from") == LOBBY and delay.get("stamp")
    assert str(history[0]["from"]) == f"{LOBBY}/alice"
    _, _, _, history = join(carol, LOBBY, "carol", maxchars=0)
    assert history == []
    leave(carol, LOBBY, "carol")
    _, _, _, history = join(carol, LOBBY, "carol", seconds=3600)
    assert [m["body"] for m in history] == ["line 0", "line 1", "line 2"]


def test_subject_is_set_by_moderators_and_sent_on_join(xmpp: XmppClients) -> None:
    alice, bob, carol = (login(xmpp, user) for user in ("alice", "bob", "carol"))
    create(alice, "lobby", "alice")
    join(bob, LOBBY, "bob")
    subjects = bob.watch("groupchat_subject")
    alice.run(alice.client.plugin["xep_0045"].set_subject, LOBBY, "Release day")
    changed = subjects.get(timeout=10)
    assert (changed["subject"], str(changed["from"])) == ("Release day", f"{LOBBY}/alice")
    bob.run(bob.client.plugin["xep_0045"].set_subject, LOBBY, "Mine now")
    assert next_error(bob)["error"]["condition"] == "forbidden"
    _, subject, _, _ = join(carol, LOBBY, "carol")
    assert (subject["subject"], str(subject["from"])) == ("Release day", f"{LOBBY}/alice")


def test_private_message_within_the_room(xmpp: XmppClients) -> None:
    alice, bob, carol = _three(xmpp)
    bob.send_message(f"{LOBBY}/carol", "psst", "chat")
    message = next_body(carol, "chat")
    assert (str(message["from"]), message["body"]) == (f"{LOBBY}/bob", "psst")
    assert message.xml.find(f"{{{NS_USER}}}x") is not None
    no_more_bodies(alice)
    bob.send_message(f"{LOBBY}/nobody", "hello?", "chat")
    assert next_error(bob)["error"]["condition"] == "item-not-found"
    submit(alice, LOBBY, allowpm="none")
    bob.send_message(f"{LOBBY}/carol", "again", "chat")
    assert next_error(bob)["error"]["condition"] == "forbidden"


def test_room_archive_answers_mam_queries(xmpp: XmppClients) -> None:
    alice, bob, carol = _three(xmpp)
    for n, client in enumerate((alice, bob, carol)):
        say(client, LOBBY, f"archived {n}")
        next_body(alice)
    query = ET.Element(f"{{{NS_MAM}}}query", queryid="q1")
    collected = archive(carol, LOBBY, query)
    bodies = [r.findtext(".//{jabber:client}body") for r in collected]
    assert bodies == ["archived 0", "archived 1", "archived 2"]
    form = ET.SubElement(query, f"{{{NS_DATA}}}x", type="submit")
    for var, value in (("FORM_TYPE", NS_MAM), ("with", f"{LOBBY}/bob")):
        f = ET.SubElement(form, f"{{{NS_DATA}}}field", var=var)
        ET.SubElement(f, f"{{{NS_DATA}}}value").text = value
    assert len(archive(carol, LOBBY, query)) == 1


def test_self_ping_answers_while_joined(xmpp: XmppClients) -> None:
    alice, bob, _ = _three(xmpp)
    ping = ET.Element(f"{{{NS_PING}}}ping")
    iq(bob, f"{LOBBY}/bob", "get", ping)
    bob.run(bob.client.plugin["xep_0045"].leave_muc, LOBBY, "bob")
    assert iq_error(bob, f"{LOBBY}/bob", "get", ET.Element(f"{{{NS_PING}}}ping")) == (
        "not-acceptable"
    )


def test_disco_lists_public_rooms_and_room_features(xmpp: XmppClients) -> None:
    alice, bob = login(xmpp, "alice"), login(xmpp, "bob")
    create(alice, "lobby", "alice", roomname="The Lobby")
    create(alice, "hidden", "alice", publicroom="0")
    disco = bob.client.plugin["xep_0030"]
    server_items = bob.call(disco.get_items, jid="localhost")["disco_items"]["items"]
    assert any(item[0] == SERVICE for item in server_items)
    service = bob.call(disco.get_info, jid=SERVICE)["disco_info"]
    assert "http://jabber.org/protocol/muc" in service["features"]
    rooms = bob.call(disco.get_items, jid=SERVICE)["disco_items"]["items"]
    assert [(str(jid), name) for jid, _, name in rooms] == [(LOBBY, "The Lobby")]
    features = bob.call(disco.get_info, jid=LOBBY)["disco_info"]["features"]
    for feature in (
        "http://jabber.org/protocol/muc",
        "muc_public",
        "muc_temporary",
        "muc_open",
        "muc_unsecured",
        "muc_unmoderated",
        "muc_semianonymous",
        NS_MAM,
        "http://jabber.org/protocol/muc#self-ping-optimization",
    ):
        assert feature in features, feature


def test_temporary_room_goes_with_its_last_occupant(xmpp: XmppClients) -> None:
    alice, bob = login(xmpp, "alice"), login(xmpp, "bob")
    create(alice, "brief", "alice")
    alice.run(alice.client.plugin["xep_0045"].leave_muc, room_jid("brief"), "alice")
    round_trip(alice)
    disco = bob.client.plugin["xep_0030"]
    with pytest.raises(IqError) as refused:
        bob.call(disco.get_info, jid=room_jid("brief"))
    assert refused.value.condition == "item-not-found"


def test_session_end_leaves_the_room(xmpp: XmppClients) -> None:
    alice, bob, _ = _three(xmpp)
    watched = presences(alice)
    bob.close()
    assert next_presence_of(watched, f"{LOBBY}/bob")["type"] == "unavailable"


def test_owner_destroys_the_room(xmpp: XmppClients) -> None:
    alice, bob, _ = _three(xmpp)
    watched = presences(bob)
    destroy = ET.Element(f"{{{NS_OWNER}}}destroy")
    ET.SubElement(destroy, f"{{{NS_OWNER}}}reason").text = "moving on"
    owner_set(alice, LOBBY, destroy)
    gone = next_presence_of(watched, f"{LOBBY}/bob")
    assert gone["type"] == "unavailable"
    assert gone.xml.find(f".//{{{NS_USER}}}destroy/{{{NS_USER}}}reason").text == "moving on"
    say(bob, LOBBY, "anyone?")
    assert next_error(bob)["error"]["condition"] == "item-not-found"
