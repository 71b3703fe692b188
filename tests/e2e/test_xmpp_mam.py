"""Message archive management (XEP-0313) with RSM paging (XEP-0059), through slixmpp's
MAM plugin as a chat client pages through history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import slixmpp

from .xmpp import PLUGINS, XmppClient, XmppClients
from .xmpp_sync import round_trip, wait_until_stored

MAM_PLUGINS = (*PLUGINS, "xep_0313")


def history(client: XmppClient, **query: Any) -> list[list[str]]:
    """The bodies in the client's archive, page by page (two per page) from the first."""

    async def pages() -> list[list[str]]:
        mam = client.client.plugin["xep_0313"]
        found = []
        async for page in mam.retrieve(iterator=True, rsm={"max": 2}, **query):
            found.append(_bodies(page))
        return found

    return client.call(pages)


def history_backwards(client: XmppClient) -> list[tuple[list[str], bool]]:
    """(bodies, complete) of each page from the last (an empty ``<before/>``) backwards,
    each page asked for ``before`` the first of the one after it."""

    async def pages() -> list[tuple[list[str], bool]]:
        mam = client.client.plugin["xep_0313"]
        page = await mam.retrieve(iterator=True, reverse=True, rsm={"max": 2}).next()
        found = []
        while page["mam"]["results"]:
            found.append((_bodies(page), page["mam_fin"]["complete"] == "true"))
            before = page["mam_fin"]["rsm"]["first"]
            page = await mam.retrieve(rsm={"max": 2, "before": before})
        return found

    return client.call(pages)


def _bodies(page: slixmpp.Iq) -> list[str]:
    return [_body(result) for result in page["mam"]["results"]]


def _body(result: slixmpp.Message) -> str:
    forwarded = result["mam_result"]["forwarded"]
    assert forwarded["delay"]["stamp"] is not None
    return forwarded["stanza"]["body"]


def converse(xmpp: XmppClients) -> tuple[XmppClient, XmppClient]:
    """alice and bob exchange five messages; alice also tells carol something."""
    alice = xmpp.login("alice@localhost/desk", plugins=MAM_PLUGINS)
    bob = xmpp.login("bob@localhost/phone", plugins=MAM_PLUGINS)
    for n in range(5):
        sender, receiver = (alice, "bob@localhost") if n % 2 == 0 else (bob, "alice@localhost")
        sender.send_message(receiver, f"message {n}")
        assert _next_body(alice if sender is bob else bob) == f"message {n}"
    alice.send_message("carol@localhost", "for carol")
    round_trip(alice)
    return alice, bob


def _next_body(client: XmppClient) -> str:
    return client.next_message()["body"]


def test_archive_pages_forwards_and_backwards(xmpp: XmppClients) -> None:
    alice, bob = converse(xmpp)
    everything = [f"message {n}" for n in range(5)] + ["for carol"]
    assert history(alice) == [everything[0:2], everything[2:4], everything[4:6]]
    assert history_backwards(alice) == [
        (everything[4:6], False),
        (everything[2:4], False),
        (everything[0:2], True),
    ]
    assert history(bob) == [everything[0:2], everything[2:4], everything[4:5]]


def test_archive_filters(xmpp: XmppClients) -> None:
    alice, _ = converse(xmpp)
    assert history(alice, with_jid=slixmpp.JID("carol@localhost")) == [["for carol"]]
    assert history(alice, with_jid=slixmpp.JID("bob@localhost/phone")) == [
        ["message 1", "message 3"]
    ]
    now = datetime.now(UTC)
    assert history(alice, end=now - timedelta(days=1)) == []
    assert len(sum(history(alice, start=now - timedelta(days=1)), [])) == 6


def test_delivered_messages_carry_the_archive_id(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=MAM_PLUGINS)
    bob = xmpp.login("bob@localhost/phone", plugins=MAM_PLUGINS)
    alice.send_message("bob@localhost", "with an id")
    delivered = bob.next_message()
    stanza_id = delivered.xml.find("{urn:xmpp:sid:0}stanza-id")
    assert stanza_id is not None and stanza_id.get("by") == "bob@localhost"

    async def archived_ids() -> list[str]:
        reply = await bob.client.plugin["xep_0313"].retrieve()
        return [result["mam_result"]["id"] for result in reply["mam"]["results"]]

    assert bob.call(archived_ids) == [stanza_id.get("id")]


def test_archives_survive_a_crash(xmpp: XmppClients) -> None:
    alice, bob = converse(xmpp)
    wait_until_stored(xmpp.broker)
    alice.close()
    bob.close()
    xmpp.broker.kill()
    xmpp.broker.start()
    alice = xmpp.login("alice@localhost/desk", plugins=MAM_PLUGINS)
    assert sum(history(alice), []) == [f"message {n}" for n in range(5)] + ["for carol"]
