"""Routing through exchanges: every type, exchange-to-exchange, alternate exchange,
declare equivalence."""

from __future__ import annotations

import pytest

from broker.errors import AccessRefused, NotFound, PreconditionFailed
from broker.vhost import PublishResult, VHost
from tests.broker.conftest import message


def routed(vhost: VHost, exchange: str, key: str, **props: object) -> set[str]:
    msg = message(exchange, key, **props)
    return {q.name for q in vhost.route(vhost.exchange(exchange), msg)}


def test_default_exchange_routes_by_queue_name(vhost: VHost) -> None:
    vhost.declare_queue("jobs")
    assert routed(vhost, "", "jobs") == {"jobs"}
    assert routed(vhost, "", "nothing") == set()
    with pytest.raises(AccessRefused):
        vhost.bind(vhost.queue("jobs"), "", "jobs", None)


def test_direct_fanout_topic(vhost: VHost) -> None:
    a, b = vhost.declare_queue("a"), vhost.declare_queue("b")
    vhost.bind(a, "amq.direct", "k", None)
    vhost.bind(b, "amq.fanout", "", None)
    vhost.bind(a, "amq.topic", "sensors.#", None)
    vhost.bind(b, "amq.topic", "sensors.*.temp", None)
    assert routed(vhost, "amq.direct", "k") == {"a"}
    assert routed(vhost, "amq.fanout", "whatever") == {"b"}
    assert routed(vhost, "amq.topic", "sensors.room1.temp") == {"a", "b"}
    assert routed(vhost, "amq.topic", "sensors") == {"a"}


def test_one_copy_per_queue_with_overlapping_bindings(vhost: VHost) -> None:
    q = vhost.declare_queue("q")
    vhost.bind(q, "amq.topic", "a.#", None)
    vhost.bind(q, "amq.topic", "a.b", None)
    result = vhost.publish(message("amq.topic", "a.b"))
    assert result.routed == 1 and len(q) == 1


def test_headers_all_and_any(vhost: VHost) -> None:
    a, b = vhost.declare_queue("a"), vhost.declare_queue("b")
    vhost.bind(a, "amq.headers", "", {"x-match": "all", "kind": "t", "room": "1"})
    vhost.bind(b, "amq.headers", "", {"x-match": "any", "kind": "t", "room": "1"})
    assert routed(vhost, "amq.headers", "", headers={"kind": "t", "room": "1"}) == {"a", "b"}
    assert routed(vhost, "amq.headers", "", headers={"kind": "t"}) == {"b"}
    assert routed(vhost, "amq.headers", "", headers={}) == set()


def test_exchange_to_exchange_and_cycles(vhost: VHost) -> None:
    vhost.declare_exchange("e1", "fanout")
    vhost.declare_exchange("e2", "topic")
    q = vhost.declare_queue("q")
    vhost.bind(vhost.exchange("e2"), "e1", "", None)
    vhost.bind(vhost.exchange("e1"), "e2", "#", None)
    vhost.bind(q, "e2", "x.*", None)
    assert routed(vhost, "e1", "x.y") == {"q"}
    assert routed(vhost, "e1", "z") == set()


def test_alternate_exchange(vhost: VHost) -> None:
    vhost.declare_exchange("main", "direct", arguments={"alternate-exchange": "spill"})
    vhost.declare_exchange("spill", "fanout")
    q = vhost.declare_queue("unrouted")
    vhost.bind(q, "spill", "", None)
    assert routed(vhost, "main", "nobody") == {"unrouted"}


def test_declare_equivalence_and_reserved_names(vhost: VHost) -> None:
    vhost.declare_exchange("e", "direct")
    assert vhost.declare_exchange("e", "direct") is vhost.exchange("e")
    with pytest.raises(PreconditionFailed):
        vhost.declare_exchange("e", "topic")
    with pytest.raises(AccessRefused):
        vhost.declare_exchange("amq.custom", "direct")
    with pytest.raises(NotFound):
        vhost.declare_exchange("missing", passive=True)
    with pytest.raises(NotFound):
        vhost.publish(message("missing", "k"))


def test_deleting_a_queue_removes_its_bindings(vhost: VHost) -> None:
    q = vhost.declare_queue("q")
    vhost.bind(q, "amq.topic", "#", None)
    vhost.delete_queue("q")
    assert routed(vhost, "amq.topic", "a") == set()
    assert not vhost.exchange("amq.topic").bindings


def test_publish_many_routes_a_run_once_in_order(vhost: VHost) -> None:
    a, b = vhost.declare_queue("a"), vhost.declare_queue("b")
    vhost.bind(a, "amq.topic", "t.#", None)
    vhost.bind(b, "amq.topic", "t.x", None)
    run = [message("amq.topic", "t.x", str(i).encode(), delivery_mode=2) for i in range(3)]
    assert outcome(vhost.publish_many(run)) == (2, True, None)
    for queue in (a, b):
        assert [queue.get(None).message.body for _ in range(3)] == [b"0", b"1", b"2"]
    assert outcome(vhost.publish_many([message("amq.topic", "t.x")])) == (2, False, None)
    assert outcome(vhost.publish_many([message("amq.topic", "u.x")])) == (0, False, None)


def test_publish_many_names_the_messages_a_full_queue_refused(vhost: VHost) -> None:
    full = vhost.declare_queue(
        "full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    vhost.bind(full, "amq.topic", "t", None)
    run = [message("amq.topic", "t", str(i).encode()) for i in range(3)]
    assert outcome(vhost.publish_many(run)) == (1, False, {1, 2})


def outcome(result: PublishResult) -> tuple[int, bool, set[int] | None]:
    return result.routed, result.stored, result.refused
