"""Presence over XMPP with slixmpp (RFC 6121 sections 3 and 4): the subscription
handshake, pre-approval, pending requests, broadcast and probes, unavailable on logout and
on a lost connection, directed presence, priorities."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import slixmpp

from .test_xmpp_roster import next_push, roster_iq
from .xmpp import XmppClient, XmppClients, wait


def manual(client: XmppClient) -> XmppClient:
    """Answer no subscription request by itself: the test does (slixmpp's default is to
    accept every request and ask back)."""

    def configure() -> None:
        client.client.roster.auto_authorize = None
        client.client.roster.auto_subscribe = False

    client.run(configure)
    return client


def login(xmpp: XmppClients, jid: str, **kwargs: Any) -> XmppClient:
    """A logged-in client that leaves subscription requests to the test."""
    client = manual(xmpp.unconnected(jid))
    return client.connect(**kwargs)


def send_presence(client: XmppClient, **kwargs: Any) -> None:
    client.run(client.client.send_presence, **kwargs)


def kind(presence: slixmpp.Presence) -> str:
    return presence.xml.get("type", "available")


def expect_presence(client: XmppClient, sender: str, type_: str = "available") -> slixmpp.Presence:
    """The next presence of ``type_`` from ``sender`` (others in between are skipped)."""
    return expect(client.presences, f"{type_} from {sender}", lambda p: _matches(p, sender, type_))


def _matches(presence: slixmpp.Presence, sender: str, type_: str) -> bool:
    return str(presence["from"]) == sender and kind(presence) == type_


def expect(events: queue.Queue[Any], what: str, matches: Callable[[Any], bool]) -> Any:
    while True:
        event = wait(events, what)
        if matches(event):
            return event


def item_of(client: XmppClient, contact: str) -> dict[str, str] | None:
    """The contact's roster item as the server has it: subscription, ask, approved."""
    item = roster_iq(client, "get")["roster"]["items"].get(contact)
    if item is None:
        return None
    return {k: item[k] for k in ("subscription", "ask", "approved") if item[k]}


def expect_push(pushes: queue.Queue[Any], contact: str, subscription: str) -> dict[str, Any]:
    """The next roster push that shows ``contact`` with ``subscription``."""
    while True:
        item = next_push(pushes)["roster"]["items"].get(contact)
        if item is not None and item["subscription"] == subscription:
            return item


def befriend(one: XmppClient, other: XmppClient) -> None:
    """Mutual subscription (``both`` on each side), driven by hand."""
    one_pushes, other_pushes = one.watch("roster_update"), other.watch("roster_update")
    one_bare, other_bare = one.jid.bare, other.jid.bare
    for a, b in ((one, other_bare), (other, one_bare)):
        send_presence(a, pto=b, ptype="subscribe")
    for a, b in ((one, other_bare), (other, one_bare)):
        send_presence(a, pto=b, ptype="subscribed")  # or a pre-approval: the same in the end
    expect_push(one_pushes, other_bare, "both")
    expect_push(other_pushes, one_bare, "both")


def test_subscription_handshake_ends_at_both(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    bob = login(xmpp, "bob@localhost/phone")
    alice_pushes, bob_pushes = alice.watch("roster_update"), bob.watch("roster_update")

    send_presence(alice, pto="bob@localhost", ptype="subscribe")
    assert expect_push(alice_pushes, "bob@localhost", "none")["ask"] == "subscribe"
    expect_presence(bob, "alice@localhost", "subscribe")

    send_presence(bob, pto="alice@localhost", ptype="subscribed")
    expect_push(bob_pushes, "alice@localhost", "from")
    expect_push(alice_pushes, "bob@localhost", "to")
    expect_presence(alice, "bob@localhost/phone")  # bob's presence once subscribed

    send_presence(bob, pto="alice@localhost", ptype="subscribe")
    expect_presence(alice, "bob@localhost", "subscribe")
    send_presence(alice, pto="bob@localhost", ptype="subscribed")
    expect_push(alice_pushes, "bob@localhost", "both")
    expect_push(bob_pushes, "alice@localhost", "both")
    expect_presence(bob, "alice@localhost/desk")

    assert item_of(alice, "bob@localhost") == {"subscription": "both"}
    assert item_of(bob, "alice@localhost") == {"subscription": "both"}
    send_presence(alice, pshow="away", pstatus="lunch")
    assert expect_presence(bob, "alice@localhost/desk")["status"] == "lunch"
    send_presence(bob, pshow="dnd", pstatus="busy")
    assert expect_presence(alice, "bob@localhost/phone")["status"] == "busy"


def test_unsubscribe_and_remove(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    bob = login(xmpp, "bob@localhost/phone")
    befriend(alice, bob)
    alice_pushes, bob_pushes = alice.watch("roster_update"), bob.watch("roster_update")

    send_presence(alice, pto="bob@localhost", ptype="unsubscribe")
    expect_push(alice_pushes, "bob@localhost", "from")
    expect_push(bob_pushes, "alice@localhost", "to")
    expect_presence(alice, "bob@localhost/phone", "unavailable")

    roster_iq(bob, "set", jid="alice@localhost", subscription="remove")
    expect_push(alice_pushes, "bob@localhost", "none")
    expect_presence(bob, "alice@localhost/desk", "unavailable")
    assert item_of(bob, "alice@localhost") is None
    assert item_of(alice, "bob@localhost") == {"subscription": "none"}


def test_refused_request(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    bob = login(xmpp, "bob@localhost/phone")
    send_presence(alice, pto="bob@localhost", ptype="subscribe")
    expect_presence(bob, "alice@localhost", "subscribe")
    send_presence(bob, pto="alice@localhost", ptype="unsubscribed")
    expect_presence(alice, "bob@localhost", "unsubscribed")
    assert item_of(alice, "bob@localhost") == {"subscription": "none"}
    assert item_of(bob, "alice@localhost") is None


def test_pre_approval(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    bob = login(xmpp, "bob@localhost/phone")
    assert "preapproval" in bob.client.features
    bob_pushes, alice_pushes = bob.watch("roster_update"), alice.watch("roster_update")
    send_presence(bob, pto="alice@localhost", ptype="subscribed")
    assert expect_push(bob_pushes, "alice@localhost", "none")["approved"] == "true"

    send_presence(alice, pto="bob@localhost", ptype="subscribe")
    expect_presence(alice, "bob@localhost", "subscribed")  # the server answered for bob
    expect_push(alice_pushes, "bob@localhost", "to")
    expect_presence(alice, "bob@localhost/phone")
    assert expect_push(bob_pushes, "alice@localhost", "from")["approved"] in ("", "false")
    assert item_of(bob, "alice@localhost") == {"subscription": "from"}


def test_pending_request_is_delivered_at_next_login(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    send_presence(alice, pto="bob@localhost", ptype="subscribe", pstatus="it's alice")
    assert item_of(alice, "bob@localhost") == {"subscription": "none", "ask": "subscribe"}
    bob = login(xmpp, "bob@localhost/phone")
    request = expect_presence(bob, "alice@localhost", "subscribe")
    assert request["status"] == "it's alice"
    assert item_of(bob, "alice@localhost") is None  # a request lists nobody by itself


def test_request_to_a_nonexistent_user_is_dropped(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    send_presence(alice, pto="nobody@localhost", ptype="subscribe")
    send_presence(alice, pto="bob@localhost", ptype="subscribe")
    assert item_of(alice, "bob@localhost") == {"subscription": "none", "ask": "subscribe"}
    assert not [p for p in _drain(alice.presences) if kind(p) == "error"]


def test_probes_on_login(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    bob = login(xmpp, "bob@localhost/phone")
    befriend(alice, bob)
    send_presence(alice, pshow="chat", pstatus="hello")
    expect_presence(bob, "alice@localhost/desk")
    later = login(xmpp, "bob@localhost/laptop")
    assert expect_presence(later, "alice@localhost/desk")["status"] == "hello"
    expect_presence(later, "bob@localhost/phone")  # and bob's own other resource


def test_unavailable_on_logout_and_on_connection_loss(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    bob = login(xmpp, "bob@localhost/phone")
    befriend(alice, bob)
    bob.close()
    expect_presence(alice, "bob@localhost/phone", "unavailable")

    bob = login(xmpp, "bob@localhost/laptop")
    expect_presence(alice, "bob@localhost/laptop")
    bob.run(lambda: bob.client.transport.abort())  # the TCP connection drops
    expect_presence(alice, "bob@localhost/laptop", "unavailable")


def test_directed_presence(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    carol = login(xmpp, "carol@localhost/home")
    send_presence(alice, pto="carol@localhost/home", pstatus="psst")
    assert expect_presence(carol, "alice@localhost/desk")["status"] == "psst"
    alice.close()
    expect_presence(carol, "alice@localhost/desk", "unavailable")


def test_presence_reaches_own_resources(xmpp: XmppClients) -> None:
    desk = login(xmpp, "alice@localhost/desk")
    phone = login(xmpp, "alice@localhost/phone")
    expect_presence(desk, "alice@localhost/phone")
    send_presence(phone, pshow="away", pstatus="walking")
    assert expect_presence(desk, "alice@localhost/phone")["status"] == "walking"


def test_negative_priority_gets_no_bare_jid_messages(xmpp: XmppClients) -> None:
    bot = login(xmpp, "bob@localhost/bot", presence=False)
    send_presence(bot, ppriority=-1)
    phone = login(xmpp, "bob@localhost/phone", presence=False)
    send_presence(phone, ppriority=5)
    alice = login(xmpp, "alice@localhost/desk")
    expect_presence(bot, "bob@localhost/phone")  # both resources are available by now
    alice.send_message("bob@localhost", "to the bare JID")
    alice.send_message("bob@localhost/bot", "to the bot")
    assert phone.next_message()["body"] == "to the bare JID"
    assert bot.next_message()["body"] == "to the bot"  # and not the bare JID's first


def _drain(events: queue.Queue[Any]) -> list[Any]:
    drained = []
    while not events.empty():
        drained.append(events.get_nowait())
    return drained


def test_subscriptions_and_requests_survive_kill_and_restart(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    bob = login(xmpp, "bob@localhost/phone")
    befriend(alice, bob)
    pushes = alice.watch("roster_update")
    send_presence(alice, pto="carol@localhost", ptype="subscribe")
    expect_push(pushes, "carol@localhost", "none")  # sent once the change is stored
    xmpp.broker.kill()
    xmpp.broker.start()
    alice = login(xmpp, "alice@localhost/desk")
    assert item_of(alice, "bob@localhost") == {"subscription": "both"}
    assert item_of(alice, "carol@localhost") == {"subscription": "none", "ask": "subscribe"}
    carol = login(xmpp, "carol@localhost/home")
    expect_presence(carol, "alice@localhost", "subscribe")
    bob = login(xmpp, "bob@localhost/phone")
    expect_presence(bob, "alice@localhost/desk")  # the probe finds alice online
