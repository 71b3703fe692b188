"""Rosters over XMPP with slixmpp (RFC 6121 section 2): get, set, remove, pushes to every
interested resource, versioning, errors, and rosters surviving a crash of the broker."""

from __future__ import annotations

from typing import Any

import pytest
from slixmpp.exceptions import IqError

from .xmpp import XmppClient, XmppClients, wait

NS_ROSTER = "jabber:iq:roster"


def roster_iq(client: XmppClient, kind: str, ver: str | None = None, **attrs: Any) -> Any:
    """Send a roster get or set (``attrs`` of the one item: jid, name, groups,
    subscription) and return the reply."""

    async def send() -> Any:
        iq = client.client.Iq()
        iq["type"] = kind
        iq.enable("roster")
        if ver is not None:
            iq["roster"]["ver"] = ver
        if attrs:
            jid = attrs.pop("jid")
            iq["roster"]["items"] = {jid: attrs}
        return await iq.send()

    return client.call(send)


def items(reply: Any) -> dict[str, dict[str, Any]]:
    return {
        str(jid): {
            "name": item["name"],
            "subscription": item["subscription"],
            "groups": sorted(item["groups"]),
        }
        for jid, item in reply["roster"]["items"].items()
    }


def next_push(pushes: Any) -> Any:
    """The next roster push (a roster 'set' from the server) in ``pushes``."""
    while True:
        iq = wait(pushes, "roster push")
        if iq["type"] == "set":
            return iq


def test_roster_get_set_remove(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")
    assert items(roster_iq(alice, "get")) == {}
    roster_iq(alice, "set", jid="bob@localhost", name="Bob", groups=["friends", "work"])
    roster_iq(alice, "set", jid="carol@localhost")
    assert items(roster_iq(alice, "get")) == {
        "bob@localhost": {"name": "Bob", "subscription": "none", "groups": ["friends", "work"]},
        "carol@localhost": {"name": "", "subscription": "none", "groups": []},
    }
    roster_iq(alice, "set", jid="bob@localhost", name="Robert")
    roster_iq(alice, "set", jid="carol@localhost", subscription="remove")
    assert items(roster_iq(alice, "get")) == {
        "bob@localhost": {"name": "Robert", "subscription": "none", "groups": []},
    }


@pytest.mark.parametrize(
    ("item", "condition"),
    [
        ({"jid": "alice@localhost"}, "not-allowed"),
        ({"jid": "bob@localhost/phone"}, "bad-request"),
        ({"jid": "bob@localhost", "groups": [""]}, "not-acceptable"),
        ({"jid": "nobody@localhost", "subscription": "remove"}, "item-not-found"),
    ],
)
def test_roster_set_errors(xmpp: XmppClients, item: dict[str, Any], condition: str) -> None:
    alice = xmpp.login("alice@localhost/desk")
    with pytest.raises(IqError) as caught:
        roster_iq(alice, "set", **item)
    assert caught.value.iq["error"]["condition"] == condition


def test_roster_set_with_two_items_is_a_bad_request(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")

    async def send() -> Any:
        iq = alice.client.Iq()
        iq["type"] = "set"
        iq.enable("roster")
        iq["roster"]["items"] = {"bob@localhost": {}, "carol@localhost": {}}
        return await iq.send()

    with pytest.raises(IqError) as caught:
        alice.call(send)
    assert caught.value.iq["error"]["condition"] == "bad-request"


def test_another_users_roster_is_forbidden(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")

    async def send() -> Any:
        iq = alice.client.Iq()
        iq["type"] = "get"
        iq["to"] = "bob@localhost"
        iq.enable("roster")
        return await iq.send()

    with pytest.raises(IqError) as caught:
        alice.call(send)
    assert caught.value.iq["error"]["condition"] == "forbidden"


def test_roster_push_reaches_every_interested_resource(xmpp: XmppClients) -> None:
    desk = xmpp.login("alice@localhost/desk")
    phone = xmpp.login("alice@localhost/phone")
    desk_pushes, phone_pushes = desk.watch("roster_update"), phone.watch("roster_update")
    roster_iq(desk, "set", jid="bob@localhost", name="Bob", groups=["friends"])
    for pushes in (desk_pushes, phone_pushes):
        push = next_push(pushes)
        assert items(push) == {
            "bob@localhost": {"name": "Bob", "subscription": "none", "groups": ["friends"]}
        }
        assert push["roster"]["ver"]
    roster_iq(desk, "set", jid="bob@localhost", subscription="remove")
    push = next_push(phone_pushes)
    assert push["roster"]["items"]["bob@localhost"]["subscription"] == "remove"
    assert "bob@localhost" not in phone.client.client_roster


def test_roster_versioning(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")
    assert "rosterver" in alice.client.features
    pushes = alice.watch("roster_update")
    first = roster_iq(alice, "get", ver="")
    ver = first["roster"]["ver"]
    assert ver
    unchanged = roster_iq(alice, "get", ver=ver)
    assert unchanged.xml.find(f"{{{NS_ROSTER}}}query") is None  # nothing new: an empty result
    roster_iq(alice, "set", jid="bob@localhost")
    pushed = next_push(pushes)["roster"]["ver"]
    assert pushed != ver
    changed = roster_iq(alice, "get", ver=ver)
    assert changed["roster"]["ver"] == pushed
    assert list(items(changed)) == ["bob@localhost"]


def test_roster_survives_kill_and_restart(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")
    roster_iq(alice, "set", jid="bob@localhost", name="Bob", groups=["friends"])
    alice.close()
    xmpp.broker.kill()
    xmpp.broker.start()
    alice = xmpp.login("alice@localhost/desk")
    assert items(roster_iq(alice, "get")) == {
        "bob@localhost": {"name": "Bob", "subscription": "none", "groups": ["friends"]}
    }
