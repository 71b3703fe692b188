"""The node model: configuration forms, the access and publish models, items with
max_items, subscriptions, and the stored record."""

from __future__ import annotations

import pytest

from protocols.xmpp.forms import FormError
from protocols.xmpp.jid import parse_jid
from protocols.xmpp.pubsub.nodes import (
    NODE_CONFIG,
    PUBLISH_OPTIONS,
    Config,
    Item,
    Node,
    NotAcceptable,
    Subscription,
)
from protocols.xmpp.roster import Roster
from protocols.xmpp.subscription import State

ALICE = parse_jid("alice@localhost")
BOB = parse_jid("bob@localhost")
CAROL = parse_jid("carol@localhost")


def _owned(**config: object) -> Node:
    node = Node("n", Config(**config))  # type: ignore[arg-type]
    node.affiliations[ALICE] = "owner"
    return node


def test_a_submitted_form_updates_the_configuration() -> None:
    config = Config().updated(
        {
            "FORM_TYPE": [NODE_CONFIG],
            "pubsub#max_items": ["5"],
            "pubsub#access_model": ["roster"],
            "pubsub#roster_groups_allowed": ["friends", "family"],
            "pubsub#persist_items": ["false"],
            "pubsub#something_else": ["ignored"],
        }
    )
    assert (config.max_items, config.access_model, config.persist_items) == (5, "roster", False)
    assert config.roster_groups_allowed == ("friends", "family")


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"FORM_TYPE": ["urn:other"]}, FormError),
        ({"pubsub#max_items": ["many"]}, FormError),
        ({"pubsub#persist_items": ["maybe"]}, FormError),
        ({"pubsub#max_items": ["1000000"]}, NotAcceptable),
        ({"pubsub#access_model": ["authorize"]}, NotAcceptable),
        ({"pubsub#title": ["a", "b"]}, FormError),
    ],
)
def test_malformed_or_unacceptable_forms(values: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        Config().updated(values)


def test_preconditions_compare_only_the_fields_given() -> None:
    config = Config(access_model="open")
    assert config.differs({"FORM_TYPE": [PUBLISH_OPTIONS], "pubsub#access_model": ["open"]}) is None
    assert config.differs({"pubsub#access_model": ["presence"]}) == "pubsub#access_model"


def test_the_configuration_form_lists_every_field() -> None:
    form = Config(title="T").form()
    values = {f.get("var"): [v.text for v in f] for f in form}
    assert values["FORM_TYPE"] == [NODE_CONFIG] and values["pubsub#title"] == ["T"]


def _roster(contact, *, from_: bool = False, groups: tuple[str, ...] = ()) -> Roster:
    roster = Roster()
    roster.set_item(contact, "", groups)
    roster.set_state(contact, State(from_=from_))
    return roster


def test_access_models() -> None:
    assert _owned().refusal(BOB, None) is None
    presence = _owned(access_model="presence")
    assert presence.refusal(BOB, Roster()) == ("not-authorized", "presence-subscription-required")
    assert presence.refusal(BOB, _roster(BOB, from_=True)) is None
    roster = _owned(access_model="roster", roster_groups_allowed=("friends",))
    assert roster.refusal(BOB, _roster(BOB, groups=("work",))) == (
        "not-authorized",
        "not-in-roster-group",
    )
    assert roster.refusal(BOB, _roster(BOB, groups=("friends",))) is None
    whitelist = _owned(access_model="whitelist")
    assert whitelist.refusal(BOB, None) == ("not-allowed", "closed-node")
    whitelist.affiliations[BOB] = "member"
    assert whitelist.refusal(BOB, None) is None
    whitelist.affiliations[CAROL] = "outcast"
    assert whitelist.refusal(CAROL, None) == ("forbidden", "")
    assert whitelist.refusal(ALICE, None) is None  # the owner always


def test_publish_models() -> None:
    node = _owned(publish_model="publishers")
    assert node.may_publish(ALICE) and not node.may_publish(BOB)
    node.affiliations[BOB] = "publisher"
    assert node.may_publish(BOB)
    subscribers = _owned(publish_model="subscribers")
    assert not subscribers.may_publish(CAROL)
    subscribers.subscriptions.append(Subscription(CAROL))
    assert subscribers.may_publish(CAROL)


def test_items_keep_max_items_newest_last() -> None:
    node = _owned(max_items=2)
    assert node.add_item(Item("a", b"<a/>")) == []
    node.add_item(Item("b", b"<b/>"))
    assert node.add_item(Item("c", b"<c/>")) == ["a"]
    node.add_item(Item("b", b"<b2/>"))  # republishing an id makes it the newest
    assert [i.id for i in node.newest()] == ["c", "b"]
    assert [i.id for i in node.newest(1)] == ["b"]


def test_the_record_round_trips() -> None:
    node = _owned(max_items=3, access_model="presence", roster_groups_allowed=("x",))
    node.affiliations[BOB] = "member"
    node.subscriptions.append(Subscription(parse_jid("bob@localhost/phone"), "sub1", False))
    node.add_item(Item("i", b"<p xmlns='urn:p'/>", "alice@localhost"))
    again = Node.decode("n", node.encode())
    assert again.config == node.config
    assert again.affiliations == node.affiliations
    assert again.subscriptions == node.subscriptions
    assert list(again.items.values()) == list(node.items.values())


def test_subscription_options() -> None:
    subscription = Subscription(BOB)
    subscription.set_options({"pubsub#deliver": ["0"]})
    assert not subscription.deliver
    with pytest.raises(FormError):
        subscription.set_options({"pubsub#deliver": ["perhaps"]})
    with pytest.raises(FormError):
        subscription.set_options({"FORM_TYPE": [NODE_CONFIG]})
