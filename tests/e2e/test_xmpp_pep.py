"""Personal eventing (XEP-0163) with slixmpp: notifications by presence subscription and
+notify interest (entity capabilities, XEP-0115), the last item on arrival, OMEMO device
lists and bundles, avatars (XEP-0084) and nicknames (XEP-0172)."""

from __future__ import annotations

from .xmpp import XmppClients, wait
from .xmpp_pubsub import (
    DEVICELIST,
    NS_NICK,
    OMEMO,
    PEP_PLUGINS,
    config,
    contacts,
    device_list,
    element,
    item_of,
    omemo_bundle,
    pep_login,
    publish_options,
    pubsub,
    refused,
)
from .xmpp_sync import round_trip


def test_a_nick_reaches_a_contact_with_notify_and_not_a_stranger(xmpp: XmppClients) -> None:
    contacts(xmpp, "alice", "bob")
    alice = pep_login(xmpp, "alice@localhost/desk")
    bob = pep_login(xmpp, "bob@localhost/phone")
    uninterested = pep_login(
        xmpp, "bob@localhost/old", plugins=("xep_0030", "xep_0199", "xep_0115")
    )
    stranger = pep_login(xmpp, "carol@localhost/phone")  # interested, but no subscription
    own, bobs, strangers = (c.watch("user_nick_publish") for c in (alice, bob, stranger))
    alice.call(alice.client.plugin["xep_0172"].publish_nick, "Alice in Wonderland")
    message = wait(bobs, "nick at bob")
    assert str(message["from"]) == "alice@localhost"
    assert message["pubsub_event"]["items"]["node"] == NS_NICK
    assert item_of(message)[2].tag == f"{{{NS_NICK}}}nick"
    assert item_of(message)[2].text == "Alice in Wonderland"
    assert item_of(wait(own, "nick at alice"))[2].text == "Alice in Wonderland"
    for client in (stranger, uninterested):
        round_trip(client)
    assert strangers.empty() and uninterested.messages.empty()


def test_the_last_item_arrives_with_presence(xmpp: XmppClients) -> None:
    contacts(xmpp, "alice", "bob")
    alice = pep_login(xmpp, "alice@localhost/desk")
    alice.call(alice.client.plugin["xep_0172"].publish_nick, "Alice")
    alice.close()
    bob = xmpp.unconnected("bob@localhost/later", plugins=PEP_PLUGINS)
    nicks = bob.watch("user_nick_publish")
    bob.connect()
    message = wait(nicks, "last nick")
    assert (str(message["from"]), item_of(message)[2].text) == ("alice@localhost", "Alice")


def test_omemo_device_list_and_bundle_are_published_and_fetched(xmpp: XmppClients) -> None:
    alice = pep_login(xmpp, "alice@localhost/conversations")
    ps = pubsub(alice)
    open_access = publish_options(access_model="open")
    alice.call(
        ps.publish, None, DEVICELIST, id="current", payload=device_list(1234), options=open_access
    )
    bundle_node = f"{OMEMO}.bundles:1234"
    alice.call(
        ps.publish, None, bundle_node, id="current", payload=omemo_bundle(), options=open_access
    )
    # a stranger's client (no roster, no subscription) fetches both, as OMEMO needs
    carol = pep_login(xmpp, "carol@localhost/dino")
    devices = carol.call(pubsub(carol).get_items, "alice@localhost", DEVICELIST)["pubsub"]["items"]
    (item,) = list(devices)
    assert item["id"] == "current"
    assert [d.get("id") for d in item["payload"]] == ["1234"]
    bundle = carol.call(pubsub(carol).get_items, "alice@localhost", bundle_node, max_items=1)
    (item,) = list(bundle["pubsub"]["items"])
    assert item["payload"].find(f"{{{OMEMO}}}identityKey").text == "aWQ="
    # a second device: the list is replaced (max_items 1), and the node keeps its access
    alice.call(
        ps.publish,
        None,
        DEVICELIST,
        id="current",
        payload=device_list(1234, 5678),
        options=open_access,
    )
    devices = carol.call(pubsub(carol).get_items, "alice@localhost", DEVICELIST)["pubsub"]["items"]
    assert [d.get("id") for d in next(iter(devices))["payload"]] == ["1234", "5678"]


def test_publish_options_are_preconditions_of_an_existing_node(xmpp: XmppClients) -> None:
    alice = pep_login(xmpp, "alice@localhost/desk")
    ps = pubsub(alice)
    alice.call(ps.publish, None, DEVICELIST, id="current", payload=device_list(1))  # presence
    open_access = publish_options(access_model="open")
    assert refused(
        lambda: alice.call(
            ps.publish, None, DEVICELIST, id="current", payload=device_list(2), options=open_access
        )
    ) == ("conflict", "precondition-not-met")
    carol = pep_login(xmpp, "carol@localhost/phone")
    assert refused(lambda: carol.call(pubsub(carol).get_items, "alice@localhost", DEVICELIST)) == (
        "not-authorized",
        "presence-subscription-required",
    )
    # as Conversations does: reconfigure, then publish again
    alice.call(ps.set_node_config, None, DEVICELIST, config(access_model="open"))
    alice.call(
        ps.publish, None, DEVICELIST, id="current", payload=device_list(2), options=open_access
    )
    carol.call(pubsub(carol).get_items, "alice@localhost", DEVICELIST)


def test_avatar_data_and_metadata(xmpp: XmppClients) -> None:
    contacts(xmpp, "alice", "bob")
    alice = pep_login(xmpp, "alice@localhost/desk")
    bob = pep_login(xmpp, "bob@localhost/phone")
    metadata = bob.watch("avatar_metadata_publish")
    avatar = alice.client.plugin["xep_0084"]
    image = b"\x89PNG\r\n\x1a\nnot really a picture"
    avatar_id = avatar.generate_id(image)
    alice.call(avatar.publish_avatar, image)
    alice.call(
        avatar.publish_avatar_metadata,
        [{"id": avatar_id, "type": "image/png", "bytes": len(image)}],
    )
    message = wait(metadata, "avatar metadata")
    assert item_of(message)[1] == avatar_id
    fetched = bob.call(bob.client.plugin["xep_0084"].retrieve_avatar, "alice@localhost", avatar_id)
    (item,) = list(fetched["pubsub"]["items"])
    assert item["id"] == avatar_id
    assert item["payload"].text.strip() and item["payload"].tag == "{urn:xmpp:avatar:data}data"


def test_only_the_account_publishes_to_its_nodes(xmpp: XmppClients) -> None:
    alice = pep_login(xmpp, "alice@localhost/desk")
    alice.call(alice.client.plugin["xep_0172"].publish_nick, "Alice")
    bob = pep_login(xmpp, "bob@localhost/phone")
    nick = element(f"{{{NS_NICK}}}nick", "Mallory")
    assert refused(
        lambda: bob.call(pubsub(bob).publish, "alice@localhost", NS_NICK, payload=nick)
    ) == (
        "forbidden",
        "",
    )
    assert refused(
        lambda: bob.call(pubsub(bob).publish, "alice@localhost", "urn:example:none", payload=nick)
    ) == ("item-not-found", "")
    assert refused(
        lambda: bob.call(pubsub(bob).get_items, "alice@localhost", "urn:example:none")
    ) == (
        "item-not-found",
        "",
    )


def test_account_disco_lists_pep_features(xmpp: XmppClients) -> None:
    alice = pep_login(xmpp, "alice@localhost/desk")
    info = alice.call(alice.client.plugin["xep_0030"].get_info, "alice@localhost")["disco_info"]
    assert "http://jabber.org/protocol/pubsub#publish-options" in info["features"]
    assert {identity[:2] for identity in info["identities"]} == {
        ("account", "registered"),
        ("pubsub", "pep"),
    }
