"""Nodes, their configuration, subscriptions and items, and PEP nodes survive kill -9
and a restart (SPEC "Guarantees": a restart restores nodes)."""

from __future__ import annotations

from .clients import Clients
from .xmpp import USERS, XmppClients, wait
from .xmpp_pubsub import (
    DEVICELIST,
    SERVICE,
    config,
    device_list,
    item_of,
    login,
    payload,
    pep_login,
    publish_options,
    pubsub,
)
from .xmpp_sync import wait_until_stored


def test_nodes_subscriptions_and_items_survive_a_crash(xmpp: XmppClients, clients: Clients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    ps = pubsub(alice)
    alice.call(ps.create_node, SERVICE, "log", config=config(max_items="3", title="Log"))
    for n in range(4):
        alice.call(ps.publish, SERVICE, "log", id=f"e{n}", payload=payload(text=str(n)))
    alice.call(ps.subscribe, SERVICE, "alerts/+")
    alice.call(ps.publish, SERVICE, "plain", id="kept", payload=payload(text="plain"))
    owner = pep_login(xmpp, "bob@localhost/phone")
    open_access = publish_options(access_model="open")
    owner.call(
        pubsub(owner).publish,
        None,
        DEVICELIST,
        id="current",
        payload=device_list(7),
        options=open_access,
    )
    wait_until_stored(xmpp.broker)
    xmpp.broker.kill()
    xmpp.broker.start()

    alice = login(xmpp, "alice@localhost/desk")
    ps = pubsub(alice)
    fields = alice.call(ps.get_node_config, SERVICE, "log")["pubsub_owner"]["configure"]["form"]
    assert fields.get_fields()["pubsub#title"]["value"] == "Log"
    items = alice.call(ps.get_items, SERVICE, "log")["pubsub"]["items"]
    assert [(item["id"], item["payload"].text) for item in items] == [
        ("e1", "1"),
        ("e2", "2"),
        ("e3", "3"),
    ]
    (plain,) = list(alice.call(ps.get_items, SERVICE, "plain")["pubsub"]["items"])
    assert (plain["id"], plain["payload"].text) == ("kept", "plain")
    subscriptions = alice.call(ps.get_subscriptions, SERVICE)["pubsub"]["subscriptions"]
    assert [s["node"] for s in subscriptions] == ["alerts/+"]
    events = alice.watch("pubsub_publish")
    mqtt = clients.paho(xmpp.broker, username="carol", password=USERS["carol"])
    mqtt.publish("alerts/fire", b"!", qos=1)
    assert item_of(wait(events, "notification after restart"))[0] == "alerts/fire"
    carol = login(xmpp, "carol@localhost/phone")
    devices = carol.call(pubsub(carol).get_items, "bob@localhost", DEVICELIST)["pubsub"]["items"]
    assert [d.get("id") for d in next(iter(devices))["payload"]] == ["7"]
