import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.acl import TopicACL
from broker.config import AclRule

# Literals the rules and requests use; "z" never appears in them, so topics built with it
# stand for "any other value" when brute-forcing.
LITERALS = ["a", "b", "", "$s"]
MAX_LEVELS = 3
UNIVERSE = [
    "/".join(levels)
    for n in range(1, MAX_LEVELS + 2)  # one level deeper than any filter is enough
    for levels in itertools.product([*LITERALS, "z"], repeat=n)
]


def ref_match(topic_filter: str, topic: str) -> bool:
    """Reference MQTT matcher by regex translation, independent of the level walker."""
    if topic.startswith("$") and topic_filter[0] in "+#":
        return False
    parts = []
    for level in topic_filter.split("/"):
        parts.append({"+": "[^/]*", "#": "#"}.get(level, re.escape(level)))
    pattern = "/".join(parts)
    pattern = "^" + pattern.replace("/#", "(/.*)?").replace("#", ".*") + "$"
    return re.match(pattern, topic, re.DOTALL) is not None


def ref_check(rules: list[AclRule], request: str, action: str) -> bool:
    for rule in rules:
        if rule.action not in (action, "all"):
            continue
        if action == "publish":
            applies = ref_match(rule.topic, request)
        else:
            topics = [t for t in UNIVERSE if ref_match(request, t)]
            if rule.allow:
                applies = all(ref_match(rule.topic, t) for t in topics)
            else:
                applies = any(ref_match(rule.topic, t) for t in topics)
        if applies:
            return rule.allow
    return True


filters = st.builds(
    lambda levels, hash_: "/".join(levels + ["#"] * hash_),
    st.lists(st.sampled_from([*LITERALS, "+"]), max_size=MAX_LEVELS),
    st.booleans(),
).filter(lambda f: f and len(f.split("/")) <= MAX_LEVELS)
topics = st.lists(st.sampled_from(LITERALS), min_size=1, max_size=MAX_LEVELS).map("/".join)
rules = st.lists(
    st.builds(
        AclRule,
        topic=filters,
        allow=st.booleans(),
        action=st.sampled_from(["publish", "subscribe", "all"]),
    ),
    max_size=4,
)


@settings(max_examples=500, deadline=None)
@given(filters, filters)
def test_single_rule_overlap_and_cover_match_brute_force(rule, request):
    matched = [t for t in UNIVERSE if ref_match(request, t)]
    overlaps = any(ref_match(rule, t) for t in matched)
    covers = all(ref_match(rule, t) for t in matched)
    assert TopicACL([AclRule(rule, False)]).check("u", "c", request, "subscribe") != overlaps
    deny_rest = [AclRule("#", False), AclRule("$s/#", False)]
    acl = TopicACL([AclRule(rule, True), *deny_rest])
    assert acl.check("u", "c", request, "subscribe") == covers


@settings(max_examples=500, deadline=None)
@given(rules, filters)
def test_subscribe_matches_brute_force(rule_list, request):
    acl = TopicACL(rule_list)
    allowed = acl.check("u", "c", request, "subscribe")
    assert allowed == ref_check(rule_list, request, "subscribe")
    if allowed:  # safety: no topic reachable through the subscription is denied
        for topic in UNIVERSE:
            if ref_match(request, topic):
                assert acl.check("u", "c", topic, "subscribe"), topic


@settings(max_examples=300, deadline=None)
@given(rules, topics)
def test_publish_matches_brute_force(rule_list, topic):
    assert TopicACL(rule_list).check("u", "c", topic, "publish") == ref_check(
        rule_list, topic, "publish"
    )


def test_reference_matcher_sanity():
    assert ref_match("a/#", "a") and ref_match("#", "a/b") and not ref_match("#", "$s/a")
    assert ref_match("$s/#", "$s") and ref_match("+/+", "/") and not ref_match("a/+", "a")


def deny_private() -> TopicACL:
    return TopicACL([AclRule("private/#", False)])


@pytest.mark.parametrize(
    ("request_filter", "allowed"),
    [
        ("#", False),
        ("private/+", False),
        ("+/x", False),
        ("private", False),
        ("public/#", True),
        ("$SYS/#", True),
    ],
)
def test_deny_applies_to_overlapping_subscriptions(request_filter, allowed):
    assert deny_private().check("u", "c", request_filter, "subscribe") is allowed


def test_allow_needs_to_cover_the_request():
    acl = TopicACL([AclRule("public/#", True), AclRule("#", False)])
    assert acl.check("u", "c", "public/+/x", "subscribe")
    assert not acl.check("u", "c", "#", "subscribe")
    assert not acl.check("u", "c", "+/x", "subscribe")
    assert acl.check("u", "c", "public/x", "publish")
    assert not acl.check("u", "c", "other", "publish")


def test_first_match_wins_and_default_allow():
    acl = TopicACL([AclRule("a/secret", False, action="publish"), AclRule("a/#", True, user="bob")])
    assert not acl.check("bob", "c", "a/secret", "publish")
    assert acl.check("bob", "c", "a/secret", "subscribe")  # rule 1 is publish-only
    assert acl.check("eve", "c", "x", "publish")  # nothing applies: default allow
    assert TopicACL([]).check("anyone", "", "#", "subscribe")
    with pytest.raises(ValueError):
        acl.check("bob", "c", "a", "read")


def test_user_and_client_substitution():
    acl = TopicACL(
        [
            AclRule("devices/%u/#", True),
            AclRule("clients/%c/in", True),
            AclRule("devices/#", False),
            AclRule("clients/#", False),
        ]
    )
    assert acl.check("alice", "c1", "devices/alice/temp", "publish")
    assert not acl.check("alice", "c1", "devices/bob/temp", "publish")
    assert acl.check("alice", "c1", "devices/alice/+", "subscribe")
    assert not acl.check("alice", "c1", "devices/+/temp", "subscribe")
    assert acl.check("alice", "c1", "clients/c1/in", "publish")
    assert not acl.check("alice", "c2x", "clients/c1/in", "publish")


@pytest.mark.parametrize("name", ["a+b", "#", "x/y", "", "$SYS", "a\0b"])
def test_unsafe_names_never_widen_allow_rules(name):
    acl = TopicACL([AclRule("devices/%u/#", True), AclRule("devices/#", False)])
    for topic in ("devices/a+b/t", "devices/x/y/t", "devices//t", "devices/$SYS/t"):
        assert not acl.check(name, "c", topic, "publish")
    assert not acl.check(name, "c", "devices/+/t", "subscribe")


def test_unsafe_names_do_not_escape_deny_rules():
    acl = TopicACL([AclRule("home/%u/#", False)])
    assert not acl.check("a+b", "c", "home/anyone/x", "publish")
    assert acl.check("alice", "c", "home/bob/x", "publish")
    assert not acl.check("alice", "c", "home/alice/x", "publish")


def test_substitution_is_single_pass():
    # A username spelt "%c" must not pick up the client id's rule.
    acl = TopicACL([AclRule("u/%u/#", True), AclRule("#", False)])
    assert acl.check("%c", "bob", "u/%c/x", "publish")
    assert not acl.check("%c", "bob", "u/bob/x", "publish")


@pytest.mark.parametrize(
    ("rules", "request_filter", "verdict"),
    [
        ([], "#", "allow"),
        ([AclRule("secret/#", False)], "#", "filter"),
        ([AclRule("secret/#", False)], "secret/+", "deny"),
        ([AclRule("secret/#", False)], "open/#", "allow"),
        ([AclRule("public/#", True), AclRule("#", False)], "#", "filter"),
        ([AclRule("public/#", True), AclRule("#", False)], "public/a", "allow"),
        ([AclRule("public/#", True), AclRule("#", False)], "other/a", "deny"),
        ([AclRule("a/#", False), AclRule("a/#", False)], "a/b", "deny"),
    ],
)
def test_subscription_verdicts(rules: list[AclRule], request_filter: str, verdict: str) -> None:
    assert TopicACL(rules).subscription("u", "c", request_filter) == verdict
