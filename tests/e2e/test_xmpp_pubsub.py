"""Publish-subscribe (XEP-0060) at pubsub.localhost with slixmpp: node creation and
configuration, publish, items, retract, purge, delete, subscriptions with ids and
options, the access models and their refusals, node disco, and the errors of bad input."""

from __future__ import annotations

import pytest
import slixmpp

from .xmpp import XmppClients, wait
from .xmpp_pubsub import (
    NS_PAYLOAD,
    NS_PUBSUB,
    SERVICE,
    config,
    form,
    item_of,
    login,
    payload,
    publish_options,
    pubsub,
    refused,
)
from .xmpp_sync import round_trip


def test_create_publish_notify_and_fetch_items(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    bob = login(xmpp, "bob@localhost/phone")
    events = bob.watch("pubsub_publish")
    alice.call(pubsub(alice).create_node, SERVICE, "weather/oslo", config=config(max_items="3"))
    answer = bob.call(pubsub(bob).subscribe, SERVICE, "weather/oslo")
    subscription = answer["pubsub"]["subscription"]
    assert subscription["subscription"] == "subscribed" and subscription["subid"]
    for n in range(4):
        alice.call(
            pubsub(alice).publish, SERVICE, "weather/oslo", id=f"t{n}", payload=payload(text=str(n))
        )
    received = [item_of(wait(events, "notification")) for _ in range(4)]
    assert [(node, item_id, el.text) for node, item_id, el in received] == [
        ("weather/oslo", f"t{n}", str(n)) for n in range(4)
    ]
    items = bob.call(pubsub(bob).get_items, SERVICE, "weather/oslo")["pubsub"]["items"]
    assert [item["id"] for item in items] == ["t1", "t2", "t3"]  # max_items 3
    last = bob.call(pubsub(bob).get_items, SERVICE, "weather/oslo", max_items=1)
    assert [item["id"] for item in last["pubsub"]["items"]] == ["t3"]
    one = bob.call(pubsub(bob).get_item, SERVICE, "weather/oslo", "t2")
    assert [item["payload"].text for item in one["pubsub"]["items"]] == ["2"]


def test_retract_purge_and_delete_notify_subscribers(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    bob = login(xmpp, "bob@localhost/phone")
    retracts, purges, deletes = (
        bob.watch(e) for e in ("pubsub_retract", "pubsub_purge", "pubsub_delete")
    )
    alice.call(pubsub(alice).create_node, SERVICE, "news", config=config(max_items="10"))
    bob.call(pubsub(bob).subscribe, SERVICE, "news")
    for item_id in ("a", "b", "c"):
        alice.call(pubsub(alice).publish, SERVICE, "news", id=item_id, payload=payload())
    alice.call(pubsub(alice).retract, SERVICE, "news", "a", notify=True)
    retraction = wait(retracts, "retraction")["pubsub_event"]["items"]
    assert retraction["node"] == "news" and [r["id"] for r in retraction] == ["a"]
    assert refused(lambda: bob.call(pubsub(bob).purge, SERVICE, "news")) == ("forbidden", "")
    alice.call(pubsub(alice).purge, SERVICE, "news")
    assert wait(purges, "purge")["pubsub_event"]["purge"]["node"] == "news"
    assert list(bob.call(pubsub(bob).get_items, SERVICE, "news")["pubsub"]["items"]) == []
    alice.call(pubsub(alice).delete_node, SERVICE, "news")
    assert wait(deletes, "delete")["pubsub_event"]["delete"]["node"] == "news"
    answer = alice.call(pubsub(alice).get_subscriptions, SERVICE)
    assert list(answer["pubsub"]["subscriptions"]) == []


def test_configuration_form_round_trip(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    alice.call(pubsub(alice).create_node, SERVICE, "configured")
    alice.call(
        pubsub(alice).set_node_config,
        SERVICE,
        "configured",
        config(title="Configured", max_items="5"),
    )
    answer = alice.call(pubsub(alice).get_node_config, SERVICE, "configured")
    fields = answer["pubsub_owner"]["configure"]["form"].get_fields()
    assert fields["pubsub#title"]["value"] == "Configured"
    assert fields["pubsub#max_items"]["value"] == "5"
    assert fields["pubsub#access_model"]["value"] == "open"
    bob = login(xmpp, "bob@localhost/phone")
    assert refused(lambda: bob.call(pubsub(bob).get_node_config, SERVICE, "configured")) == (
        "forbidden",
        "",
    )


def test_creating_an_existing_node_conflicts_and_instant_nodes_get_names(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    alice.call(pubsub(alice).create_node, SERVICE, "taken")
    bob = login(xmpp, "bob@localhost/phone")
    assert refused(lambda: bob.call(pubsub(bob).create_node, SERVICE, "taken")) == ("conflict", "")
    instant = alice.call(pubsub(alice).create_node, SERVICE, None)
    assert instant["pubsub"]["create"]["node"]


def test_subscription_ids_and_options(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    events = alice.watch("pubsub_publish")
    first = alice.call(pubsub(alice).subscribe, SERVICE, "multi")["pubsub"]["subscription"]["subid"]
    again = alice.call(pubsub(alice).subscribe, SERVICE, "multi")["pubsub"]["subscription"]["subid"]
    assert again == first  # the same subscription, not a second one
    options = form({"pubsub#deliver": True}, f"{NS_PUBSUB}#subscribe_options")
    second = alice.call(pubsub(alice).subscribe, SERVICE, "multi", options=options)
    second_id = second["pubsub"]["subscription"]["subid"]
    assert second_id != first
    # with two subscriptions, which one must be said
    assert refused(lambda: alice.call(pubsub(alice).unsubscribe, SERVICE, "multi")) == (
        "bad-request",
        "subid-required",
    )
    assert refused(
        lambda: alice.call(pubsub(alice).unsubscribe, SERVICE, "multi", subid="nonsense")
    ) == ("not-acceptable", "invalid-subid")
    alice.call(pubsub(alice).publish, SERVICE, "multi", id="one", payload=payload())
    message = wait(events, "notification")
    headers = message.xml.findall(".//{http://jabber.org/protocol/shim}header")
    assert sorted(h.text for h in headers) == sorted([first, second_id])
    # pubsub#deliver off: the first subscription goes quiet
    current = _options(alice, "multi", first)
    field = "{jabber:x:data}field[@var='pubsub#deliver']/{jabber:x:data}value"
    deliver = current.xml.find(f".//{field}")
    assert deliver is not None and deliver.text == "1"
    _options(
        alice, "multi", first, form({"pubsub#deliver": False}, f"{NS_PUBSUB}#subscribe_options")
    )
    alice.call(pubsub(alice).publish, SERVICE, "multi", id="two", payload=payload())
    message = wait(events, "notification")
    headers = message.xml.findall(".//{http://jabber.org/protocol/shim}header")
    assert headers == []  # one subscription delivers now: no SubID header needed
    alice.call(pubsub(alice).unsubscribe, SERVICE, "multi", subid=first)
    alice.call(pubsub(alice).unsubscribe, SERVICE, "multi")
    assert refused(lambda: alice.call(pubsub(alice).unsubscribe, SERVICE, "multi")) == (
        "unexpected-request",
        "not-subscribed",
    )


def _options(client, node: str, subid: str, submitted=None):
    """Get (or with a form, set) the options of one subscription (XEP-0060 6.3)."""
    make = client.client.make_iq_get if submitted is None else client.client.make_iq_set
    iq = client.run(make, ito=SERVICE)
    iq["pubsub"]["options"]["node"] = node
    iq["pubsub"]["options"]["jid"] = client.jid.bare
    iq["pubsub"]["options"].xml.set("subid", subid)
    if submitted is not None:
        iq["pubsub"]["options"].append(submitted)
    return client.iq(iq)


def test_subscribing_another_jid_is_refused(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    assert refused(
        lambda: alice.call(pubsub(alice).subscribe, SERVICE, "x", subscribee="bob@localhost")
    ) == ("bad-request", "invalid-jid")


def _roster_contacts(xmpp: XmppClients, owner: str, contact: str) -> None:
    """``contact`` subscribes to ``owner``'s presence and is approved."""
    a = xmpp.login(f"{owner}@localhost/roster")
    c = xmpp.login(f"{contact}@localhost/roster")
    a.run(a.client.send_presence, pto=f"{contact}@localhost", ptype="subscribed")
    c.run(c.client.send_presence, pto=f"{owner}@localhost", ptype="subscribe")
    round_trip(c)
    round_trip(a)


@pytest.mark.parametrize(
    ("model", "refusal"),
    [
        ("presence", ("not-authorized", "presence-subscription-required")),
        ("roster", ("not-authorized", "not-in-roster-group")),
        ("whitelist", ("not-allowed", "closed-node")),
    ],
)
def test_access_models_refuse_strangers(xmpp: XmppClients, model: str, refusal: tuple) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    options = config(access_model=model, roster_groups_allowed=["friends"])
    alice.call(pubsub(alice).create_node, SERVICE, f"closed/{model}", config=options)
    alice.call(pubsub(alice).publish, SERVICE, f"closed/{model}", id="x", payload=payload())
    carol = login(xmpp, "carol@localhost/phone")
    assert (
        refused(lambda: carol.call(pubsub(carol).subscribe, SERVICE, f"closed/{model}")) == refusal
    )
    assert (
        refused(lambda: carol.call(pubsub(carol).get_items, SERVICE, f"closed/{model}")) == refusal
    )


def test_presence_access_admits_a_contact(xmpp: XmppClients) -> None:
    _roster_contacts(xmpp, "alice", "bob")
    alice = login(xmpp, "alice@localhost/desk")
    alice.call(pubsub(alice).create_node, SERVICE, "mine", config=config(access_model="presence"))
    bob = login(xmpp, "bob@localhost/phone")
    bob.call(pubsub(bob).subscribe, SERVICE, "mine")


def test_roster_access_admits_an_allowed_group(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    alice.call(alice.client.update_roster, "bob@localhost", groups=["friends"])
    options = config(access_model="roster", roster_groups_allowed=["friends"])
    alice.call(pubsub(alice).create_node, SERVICE, "friends-only", config=options)
    bob = login(xmpp, "bob@localhost/phone")
    bob.call(pubsub(bob).subscribe, SERVICE, "friends-only")
    carol = login(xmpp, "carol@localhost/phone")
    assert refused(lambda: carol.call(pubsub(carol).subscribe, SERVICE, "friends-only")) == (
        "not-authorized",
        "not-in-roster-group",
    )


def test_whitelist_admits_members_the_owner_affiliates(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    alice.call(pubsub(alice).create_node, SERVICE, "club", config=config(access_model="whitelist"))
    alice.call(pubsub(alice).modify_affiliations, SERVICE, "club", [("bob@localhost", "member")])
    affiliations = alice.call(pubsub(alice).get_node_affiliations, SERVICE, "club")
    listed = {
        (str(a["jid"]), a["affiliation"]) for a in affiliations["pubsub_owner"]["affiliations"]
    }
    assert listed == {("alice@localhost", "owner"), ("bob@localhost", "member")}
    bob = login(xmpp, "bob@localhost/phone")
    bob.call(pubsub(bob).subscribe, SERVICE, "club")
    carol = login(xmpp, "carol@localhost/phone")
    assert refused(lambda: carol.call(pubsub(carol).subscribe, SERVICE, "club")) == (
        "not-allowed",
        "closed-node",
    )


def test_publish_model_publishers_refuses_others(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    alice.call(
        pubsub(alice).create_node, SERVICE, "board", config=config(publish_model="publishers")
    )
    bob = login(xmpp, "bob@localhost/phone")
    assert refused(lambda: bob.call(pubsub(bob).publish, SERVICE, "board", payload=payload())) == (
        "forbidden",
        "",
    )


def test_node_disco(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    disco = alice.client.plugin["xep_0030"]
    server_items = alice.call(disco.get_items, "localhost")["disco_items"]["items"]
    assert any(jid == SERVICE for jid, _, _ in server_items)
    service = alice.call(disco.get_info, SERVICE)["disco_info"]
    assert ("pubsub", "service", None, "Topics") in service["identities"]
    assert f"{NS_PUBSUB}#publish" in service["features"]
    alice.call(pubsub(alice).create_node, SERVICE, "listed", config=config(title="Listed"))
    alice.call(pubsub(alice).publish, SERVICE, "listed", id="only", payload=payload())
    node = alice.call(disco.get_info, SERVICE, node="listed")["disco_info"]
    assert {identity[:2] for identity in node["identities"]} == {("pubsub", "leaf")}
    fields = node.xml.findall("{jabber:x:data}x/{jabber:x:data}field")
    meta = {f.get("var"): f.findtext("{jabber:x:data}value") for f in fields}
    assert meta["FORM_TYPE"] == f"{NS_PUBSUB}#meta-data"
    assert (meta["pubsub#title"], meta["pubsub#owner"]) == ("Listed", "alice@localhost")
    nodes = alice.call(disco.get_items, SERVICE)["disco_items"]["items"]
    assert (SERVICE, "listed", None) in nodes
    items = alice.call(disco.get_items, SERVICE, node="listed")["disco_items"]["items"]
    assert set(items) == {(SERVICE, None, "only")}


def test_bad_input_gets_the_right_errors(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    ps = pubsub(alice)
    # a node name that is no topic cannot be published to
    assert refused(lambda: alice.call(ps.publish, SERVICE, "a/+/b", payload=payload())) == (
        "item-not-found",
        "",
    )
    assert refused(lambda: alice.call(ps.get_items, SERVICE, "a/#/b")) == ("item-not-found", "")
    # an oversized item
    alice.call(ps.create_node, SERVICE, "small", config=config(max_payload_size="100"))
    big = payload(text="x" * 200)
    assert refused(lambda: alice.call(ps.publish, SERVICE, "small", payload=big)) == (
        "not-acceptable",
        "payload-too-big",
    )
    # a malformed configuration form: a boolean that is not one, a number that is not one
    assert refused(
        lambda: alice.call(ps.create_node, SERVICE, "bad1", config=config(persist_items="maybe"))
    ) == ("bad-request", "")
    assert refused(
        lambda: alice.call(ps.set_node_config, SERVICE, "small", config(max_items="many"))
    ) == ("bad-request", "")
    wrong_type = form({"pubsub#title": "x"}, "urn:example:other")
    assert refused(lambda: alice.call(ps.set_node_config, SERVICE, "small", wrong_type)) == (
        "bad-request",
        "",
    )
    assert refused(
        lambda: alice.call(ps.create_node, SERVICE, "bad2", config=config(access_model="secret"))
    ) == ("not-acceptable", "")
    # preconditions that the node does not meet
    alice.call(ps.create_node, SERVICE, "pre", config=config(access_model="open"))
    options = publish_options(access_model="whitelist")
    assert refused(
        lambda: alice.call(ps.publish, SERVICE, "pre", payload=payload(), options=options)
    ) == ("conflict", "precondition-not-met")
    # an item without payload, an unknown request
    assert refused(lambda: alice.call(ps.publish, SERVICE, "pre", id="empty")) == (
        "bad-request",
        "payload-required",
    )
    iq = alice.run(alice.client.make_iq_get, ito=SERVICE)
    iq.append(alice.client.plugin["xep_0060"].stanza.Pubsub())
    iq["pubsub"].xml.append(slixmpp.ET.Element(f"{{{NS_PUBSUB}}}frobnicate"))
    assert refused(lambda: alice.iq(iq)) == ("feature-not-implemented", "unsupported")
    # the data wrapper with bad base64
    wrapped = slixmpp.ET.Element(f"{{{NS_PAYLOAD}}}data", encoding="base64")
    wrapped.text = "not base64!"
    assert refused(lambda: alice.call(ps.publish, SERVICE, "pre", payload=wrapped)) == (
        "bad-request",
        "",
    )
    # no node named; two items in one publish
    assert refused(lambda: alice.call(ps.subscribe, SERVICE, "")) == (
        "bad-request",
        "nodeid-required",
    )
    iq = alice.run(alice.client.make_iq_set, ito=SERVICE)
    iq["pubsub"]["publish"]["node"] = "pre"
    for item_id in ("one", "two"):
        item = slixmpp.ET.SubElement(
            iq["pubsub"]["publish"].xml, f"{{{NS_PUBSUB}}}item", id=item_id
        )
        item.append(payload())
    assert refused(lambda: alice.iq(iq)) == ("bad-request", "invalid-payload")
    # and the stream carries on
    round_trip(alice)


def test_creation_can_be_switched_off(broker_factory) -> None:
    from .xmpp import XmppClients as Pool
    from .xmpp import xmpp_config

    cfg = xmpp_config()
    cfg["xmpp"] = {"pubsub_create_nodes": False}
    pool = Pool(broker_factory(cfg))
    try:
        alice = login(pool, "alice@localhost/desk")
        assert refused(lambda: alice.call(pubsub(alice).create_node, SERVICE, "n")) == (
            "forbidden",
            "",
        )
        # nodes need no creation: publish and subscribe still work
        alice.call(pubsub(alice).subscribe, SERVICE, "n")
        alice.call(pubsub(alice).publish, SERVICE, "n", payload=payload())
    finally:
        pool.close_all()
