"""Queue semantics: FIFO, prefetch, ack/nack/requeue, TTL, limits, dead-lettering,
priorities."""

from __future__ import annotations

import time

import pytest

from broker.errors import PreconditionFailed
from broker.queues import ACCEPTED, REJECTED, STORED, Entry, Queue
from broker.vhost import VHost
from tests.broker.conftest import RecordingConsumer, message


def test_fifo_and_round_robin(vhost: VHost) -> None:
    queue = vhost.declare_queue("q")
    for i in range(4):
        vhost.publish(message("", "q", str(i).encode()))
    first, second = RecordingConsumer(), RecordingConsumer()
    queue.add_consumer(first)
    queue.add_consumer(second)
    vhost.publish(message("", "q", b"4"))
    vhost.publish(message("", "q", b"5"))
    assert first.bodies()[:4] == [b"0", b"1", b"2", b"3"]
    assert sorted(first.bodies()[4:] + second.bodies()) == [b"4", b"5"]
    assert len(second.bodies()) == 1


def test_prefetch_holds_back_until_ack(vhost: VHost) -> None:
    queue = vhost.declare_queue("q")
    consumer = RecordingConsumer(prefetch=2)
    queue.add_consumer(consumer)
    for i in range(5):
        vhost.publish(message("", "q", str(i).encode()))
    assert consumer.bodies() == [b"0", b"1"]
    assert len(queue) == 3
    consumer.ack(queue, consumer.deliveries[0])
    assert consumer.bodies() == [b"0", b"1", b"2"]


def test_requeue_sets_redelivered_and_keeps_order(vhost: VHost) -> None:
    queue = vhost.declare_queue("q")
    consumer = RecordingConsumer(prefetch=2)
    queue.add_consumer(consumer)
    for i in range(3):
        vhost.publish(message("", "q", str(i).encode()))
    queue.remove_consumer(consumer)
    other = RecordingConsumer()
    queue.add_consumer(other)
    assert other.bodies() == [b"0", b"1", b"2"]
    assert [e.redelivered for e in other.deliveries] == [True, True, False]


def test_reject_without_requeue_dead_letters_with_x_death(vhost: VHost) -> None:
    vhost.declare_exchange("dlx", "fanout")
    dead = vhost.declare_queue("dead")
    vhost.bind(dead, "dlx", "", None)
    queue = vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "dlx"})
    consumer = RecordingConsumer()
    queue.add_consumer(consumer)
    vhost.publish(message("", "q", b"bad"))
    assert queue.reject(consumer.deliveries[0].seq, requeue=False)
    watcher = RecordingConsumer()
    dead.add_consumer(watcher)
    [entry] = watcher.deliveries
    death = entry.message.properties.headers["x-death"][0]
    assert (death["reason"], death["queue"], death["count"]) == ("rejected", "q", 1)
    assert entry.message.properties.headers["x-first-death-reason"] == "rejected"


def test_message_ttl_expires_and_dead_letters(vhost: VHost) -> None:
    vhost.declare_exchange("dlx", "direct")
    dead = vhost.declare_queue("dead")
    vhost.bind(dead, "dlx", "late", None)
    queue = vhost.declare_queue(
        "q",
        arguments={
            "x-message-ttl": 0,
            "x-dead-letter-exchange": "dlx",
            "x-dead-letter-routing-key": "late",
        },
    )
    vhost.publish(message("", "q", b"gone"))
    assert len(queue) == 0
    assert len(dead) == 1


def test_per_message_expiry_is_checked_at_delivery(vhost: VHost) -> None:
    queue = vhost.declare_queue("q")
    expired = message("", "q", b"old")
    expired.expires_at = time.time() - 1
    vhost.publish(expired)
    vhost.publish(message("", "q", b"fresh"))
    consumer = RecordingConsumer()
    queue.add_consumer(consumer)
    assert consumer.bodies() == [b"fresh"]


def test_max_length_drop_head(vhost: VHost) -> None:
    queue = vhost.declare_queue("q", arguments={"x-max-length": 2})
    for i in range(4):
        vhost.publish(message("", "q", str(i).encode()))
    consumer = RecordingConsumer()
    queue.add_consumer(consumer)
    assert consumer.bodies() == [b"2", b"3"]


def test_max_length_reject_publish(vhost: VHost) -> None:
    queue = vhost.declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    assert queue.publish(message("", "q")) == ACCEPTED
    assert queue.publish(message("", "q")) == REJECTED
    assert vhost.publish(message("", "q")).rejected


def test_max_length_bytes(vhost: VHost) -> None:
    queue = vhost.declare_queue("q", arguments={"x-max-length-bytes": 10})
    for body in (b"12345", b"67890", b"abc"):
        vhost.publish(message("", "q", body))
    consumer = RecordingConsumer()
    queue.add_consumer(consumer)
    assert consumer.bodies() == [b"67890", b"abc"]


def test_priorities(vhost: VHost) -> None:
    queue = vhost.declare_queue("q", arguments={"x-max-priority": 5})
    for body, priority in ((b"low", 1), (b"high", 5), (b"none", None), (b"mid", 3)):
        vhost.publish(message("", "q", body, priority=priority))
    assert len(queue) == 4
    consumer = RecordingConsumer()
    queue.add_consumer(consumer)
    assert consumer.bodies() == [b"high", b"mid", b"low", b"none"]


def test_persistent_message_on_durable_queue_is_stored(vhost: VHost) -> None:
    durable = vhost.declare_queue("d")
    transient = vhost.declare_queue("t", durable=False)
    assert durable.publish(message("", "d", delivery_mode=2)) == STORED
    assert durable.publish(message("", "d")) == ACCEPTED
    assert transient.publish(message("", "t", delivery_mode=2)) == ACCEPTED


def test_invalid_arguments_refused(vhost: VHost) -> None:
    with pytest.raises(PreconditionFailed):
        vhost.declare_queue("q", arguments={"x-max-length": -1})
    with pytest.raises(PreconditionFailed):
        vhost.declare_queue("q", arguments={"x-overflow": "sideways"})


def test_no_ack_consumer_settles_immediately(vhost: VHost) -> None:
    queue = vhost.declare_queue("q")
    consumer = RecordingConsumer(no_ack=True)
    queue.add_consumer(consumer)
    vhost.publish(message("", "q"))
    assert consumer.bodies() == [b"x"] and not queue.unacked


def test_auto_delete_after_last_consumer(vhost: VHost) -> None:
    queue = vhost.declare_queue("q", auto_delete=True)
    consumer = RecordingConsumer()
    queue.add_consumer(consumer)
    queue.remove_consumer(consumer)
    assert "q" not in vhost.queues


def test_get_and_purge(vhost: VHost) -> None:
    queue = vhost.declare_queue("q")
    for i in range(3):
        vhost.publish(message("", "q", str(i).encode()))
    entry = queue.get(None)
    assert entry is not None and entry.message.body == b"0"
    assert queue.purge() == 2
    assert queue.get(None) is None


class BatchConsumer(RecordingConsumer):
    """Takes backlogs in batches of its room (as an MQTT session does); records each."""

    def __init__(self, prefetch: int) -> None:
        super().__init__(prefetch)
        self.batches: list[list[bytes]] = []

    def room(self) -> int:
        return self.prefetch - self.unacked

    def deliver_entries(self, queue: Queue, entries: list[Entry]) -> list[bool]:
        self.batches.append([e.message.body for e in entries])
        return [self.deliver(queue, e.message, e.seq, e.redelivered) for e in entries]


def test_backlog_goes_to_a_batch_consumer_in_batches_of_its_room(vhost: VHost) -> None:
    queue = vhost.declare_queue("q")
    consumer = BatchConsumer(prefetch=3)
    queue.add_consumer(consumer)
    queue.publish_run([message("", "q", str(i).encode()) for i in range(8)])
    assert consumer.bodies() == [b"0", b"1", b"2"]  # straight to the consumer while ready
    assert len(queue) == 5
    for entry in consumer.deliveries[:2]:
        queue.ack(entry.seq)
    consumer.unacked -= 2
    queue.dispatch()
    assert consumer.batches == [[b"3", b"4"]]
    assert sorted(queue.unacked) == [e.seq for e in consumer.deliveries[2:]]
    for entry in consumer.deliveries[2:]:
        consumer.ack(queue, entry)
    assert consumer.bodies() == [str(i).encode() for i in range(8)]
    assert len(queue) == 0


def test_batch_dispatch_dead_letters_expired_entries(vhost: VHost) -> None:
    vhost.declare_exchange("dlx", "fanout")
    dead = vhost.declare_queue("dead")
    vhost.bind(dead, "dlx", "", None)
    queue = vhost.declare_queue("q", arguments={"x-dead-letter-exchange": "dlx"})
    expired = message("", "q", b"old")
    expired.expires_at = time.time() - 1
    for body in (b"a", b"b"):
        vhost.publish(message("", "q", body))
    vhost.publish(expired)
    vhost.publish(message("", "q", b"c"))
    consumer = BatchConsumer(prefetch=10)
    queue.add_consumer(consumer)
    assert consumer.batches == [[b"a", b"b", b"c"]]
    assert len(dead) == 1


def test_settled_batch_deliveries_are_not_kept(vhost: VHost) -> None:
    queue = vhost.declare_queue("q")
    for i in range(4):
        vhost.publish(message("", "q", str(i).encode()))
    consumer = BatchConsumer(prefetch=4)
    consumer.no_ack = True
    queue.add_consumer(consumer)
    assert consumer.batches == [[b"0", b"1", b"2", b"3"]]
    assert not queue.unacked


def test_run_behind_a_backlog_is_queued_in_order_and_stored(vhost: VHost) -> None:
    queue = vhost.declare_queue("q")
    consumer = RecordingConsumer(prefetch=1)
    queue.add_consumer(consumer)
    vhost.publish(message("", "q", b"first"))
    run = [message("", "q", str(i).encode(), delivery_mode=2) for i in range(3)]
    assert queue.publish_run(run) == (True, None)
    assert len(queue) == 3
    consumer.ack(queue, consumer.deliveries[0])
    assert consumer.deliveries[1].message is run[0]
    assert queue.unacked[consumer.deliveries[1].seq].stored


def test_run_over_the_length_limit_keeps_its_overflow_rules(vhost: VHost) -> None:
    queue = vhost.declare_queue("q", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    queue.add_consumer(RecordingConsumer(prefetch=1))
    vhost.publish(message("", "q", b"held"))
    run = [message("", "q", str(i).encode()) for i in range(3)]
    assert queue.publish_run(run) == (False, {2})
    assert len(queue) == 2
