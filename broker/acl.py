"""Topic ACLs shared by every protocol, in MQTT filter syntax.

Rules are checked in order, the first that applies decides, and with none the answer is
allow. Matching follows MQTT: a rule filter whose first level is `+` or `#` does not
match `$`-topics (so `#` never covers `$SYS/...`).

Publish: a rule applies when its filter matches the concrete topic.

Subscribe, in `check` (the request is itself a filter, so "matches" needs care to stay
safe; `subscription` refines this into allow / deny / filter-per-delivery):
- a deny rule applies when it and the request can match a common topic: denying
  `private/#` refuses subscriptions to `#`, `private/+` and `+/x` alike;
- an allow rule applies only when it covers the request, i.e. matches every topic the
  request can match: allowing `public/#` admits `public/+/x` but not `#`.
Hence an allowed subscription never matches a topic that a topic-by-topic check would
deny; it may be refused although a union of allow rules would have covered it.

Substitution: `%u` is the username, `%c` the client id. A value that is empty, starts
with `$` or holds `/`, `+`, `#` or NUL could widen or reshape a rule, so with such a
value an allow rule never applies, and a deny rule applies as if each level holding the
placeholder were `+`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence

from broker.config import AclRule

_UNSAFE = frozenset("/+#\0")
_PLACEHOLDER = re.compile("%[uc]")
_CACHE_SIZE = 4096
ACTIONS = ("publish", "subscribe")

Levels = tuple[str, ...]
_Compiled = tuple[tuple[Levels, bool], ...]  # (filter levels, allow) in rule order


def _matches(rule: Levels, topic: Levels) -> bool:
    """MQTT filter `rule` against a concrete topic."""
    if topic[0].startswith("$") and rule[0] in ("+", "#"):
        return False
    for i, level in enumerate(rule):
        if level == "#":
            return True
        if i == len(topic) or (level != "+" and level != topic[i]):
            return False
    return len(rule) == len(topic)


def _covers(rule: Levels, request: Levels) -> bool:
    """Every topic the filter `request` can match is matched by `rule`."""
    if request[0].startswith("$") and rule[0] in ("+", "#"):
        return False
    for i, level in enumerate(rule):
        if level == "#":
            return True
        if i == len(request):
            return False
        if request[i] == "#":
            # A leading `#` needs at least one level, so `+/#` covers it; deeper, `#`
            # also matches the parent, which only a rule `#` here covers.
            return i == 0 and rule == ("+", "#")
        if level != "+" and level != request[i]:
            return False  # request level is `+` or a different literal
    return len(rule) == len(request)


def _intersects(a: Levels, b: Levels) -> bool:
    """Some topic is matched by both filters."""
    for x, y in ((a, b), (b, a)):
        if x[0] in ("+", "#") and y[0].startswith("$"):
            return False
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x == "#" or y == "#":
            return True  # `#` also matches the parent, so a shorter side still meets it
        if x is None or y is None:
            return False
        if x != "+" and y != "+" and x != y:
            return False
    return True


class TopicACL:
    """Ordered allow/deny rules; `check` runs on every publish, so compiled rule lists
    are cached per (user, client id)."""

    def __init__(self, rules: Sequence[AclRule]) -> None:
        self._rules = tuple(rules)
        self._cache: OrderedDict[tuple[str, str], dict[str, _Compiled]] = OrderedDict()

    def __bool__(self) -> bool:
        """Whether any rule exists; with none, callers may skip ``check``."""
        return bool(self._rules)

    def check(self, user: str, client_id: str, topic_or_filter: str, action: str) -> bool:
        """May `user` publish to a topic / subscribe to a filter? action: publish|subscribe."""
        if not self._rules:
            return True
        if action not in ACTIONS:
            raise ValueError(f"unknown ACL action {action!r}")
        levels = tuple(topic_or_filter.split("/"))
        for rule, allow in self._compiled(user, client_id)[action]:
            if action == "publish":
                applies = _matches(rule, levels)
            elif allow:
                applies = _covers(rule, levels)
            else:
                applies = _intersects(rule, levels)
            if applies:
                return allow
        return True

    def subscription(self, user: str, client_id: str, topic_filter: str) -> str:
        """The verdict on a subscription: "allow" when every topic it can match is allowed,
        "deny" when none is, "filter" when only some are.  A filtered subscription is
        granted and each delivery is checked on its concrete topic (as Mosquitto checks
        reads per message), so denying `secret/#` does not refuse a subscription to `#`."""
        if not self._rules:
            return "allow"
        levels = tuple(topic_filter.split("/"))
        partial: set[bool] = set()
        verdict = True
        for rule, allow in self._compiled(user, client_id)["subscribe"]:
            if _covers(rule, levels):
                verdict = allow
                break
            if _intersects(rule, levels):
                partial.add(allow)
        if partial - {verdict}:
            return "filter"
        return "allow" if verdict else "deny"

    def _compiled(self, user: str, client_id: str) -> dict[str, _Compiled]:
        key = (user, client_id)
        compiled = self._cache.get(key)
        if compiled is not None:
            self._cache.move_to_end(key)
            return compiled
        per_action: dict[str, list[tuple[Levels, bool]]] = {a: [] for a in ACTIONS}
        for rule in self._rules:
            if rule.user != "*" and rule.user != user:
                continue
            levels = _substitute(rule.topic, user, client_id, rule.allow)
            if levels is None:
                continue
            for action in ACTIONS:
                if rule.action in (action, "all"):
                    per_action[action].append((levels, rule.allow))
        compiled = {a: tuple(rules) for a, rules in per_action.items()}
        self._cache[key] = compiled
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return compiled


def _substitute(topic: str, user: str, client_id: str, allow: bool) -> Levels | None:
    """Rule levels with %u/%c filled in (one pass, so a value holding "%c" stays
    literal); None when an allow rule cannot apply."""
    values = {"%u": user, "%c": client_id}
    out = []
    for level in topic.split("/"):
        used = _PLACEHOLDER.findall(level)
        if not used:
            out.append(level)
        elif any(_unsafe(values[p]) for p in used):
            if allow:
                return None
            out.append("+")
        else:
            out.append(_PLACEHOLDER.sub(lambda m: values[m[0]], level))
    return tuple(out)


def _unsafe(value: str) -> bool:
    return not value or value.startswith("$") or not _UNSAFE.isdisjoint(value)
