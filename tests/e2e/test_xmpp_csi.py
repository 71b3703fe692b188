"""Client state indication (XEP-0352) with slixmpp: an inactive client gets presence
late and coalesced, chat messages at once."""

from __future__ import annotations

from .xmpp import PLUGINS, XmppClient, XmppClients


def shows_from(client: XmppClient, sender: str) -> list[str]:
    """The show values of the presences from ``sender`` that ``client`` has received."""
    shows = []
    while not client.presences.empty():
        presence = client.presences.get_nowait()
        if str(presence["from"]) == sender:
            shows.append(presence["show"])
    return shows


def round_trip(client: XmppClient) -> None:
    """Ping the server: everything the client sent before is handled."""
    client.call(client.client.plugin["xep_0199"].send_ping, "localhost")


def test_inactive_client_gets_presence_late_and_coalesced(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/phone", plugins=(*PLUGINS, "xep_0352"))
    bob = xmpp.login("bob@localhost/desk")
    alice.run(alice.client.plugin["xep_0352"].send_inactive)
    round_trip(alice)
    for show in ("away", "dnd"):
        bob.run(bob.client.send_presence, pto="alice@localhost/phone", pshow=show)
    bob.send_message("alice@localhost/phone", "urgent")
    assert alice.next_message()["body"] == "urgent"
    assert shows_from(alice, "bob@localhost/desk") == ["dnd"]  # released just before

    for show in ("xa", "chat"):
        bob.run(bob.client.send_presence, pto="alice@localhost/phone", pshow=show)
    round_trip(bob)  # held for alice by now
    alice.run(alice.client.plugin["xep_0352"].send_active)
    presence = alice.next_presence()
    assert (str(presence["from"]), presence["show"]) == ("bob@localhost/desk", "chat")
