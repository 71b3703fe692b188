"""MQTT 5 shared subscriptions (4.8.2): ``$share/<group>/<filter>``.

Each group's filter is one core queue bound to ``amq.topic``; the sessions subscribed to it
are that queue's consumers, so the core's round robin balances messages across them and
a member's unacknowledged messages go back to the queue, and on to another member, when
it leaves.
"""

from __future__ import annotations

from protocols.mqtt.codec import valid_topic_filter

PREFIX = "$share/"


def is_shared(topic_filter: str) -> bool:
    return topic_filter.startswith(PREFIX)


def split(topic_filter: str) -> tuple[str, str] | None:
    """(share name, filter) of a shared subscription, None when it is malformed: the share
    name must be non-empty without ``/``, ``+`` or ``#``, the filter valid."""
    group, sep, inner = topic_filter[len(PREFIX) :].partition("/")
    if not sep or not group or "+" in group or "#" in group or not valid_topic_filter(inner):
        return None
    return group, inner


def queue_name(topic_filter: str) -> str:
    return f"mqtt.shared.{topic_filter[len(PREFIX) :]}"
