"""Message rates sampled from the queues' counters by the core's housekeeping."""

from __future__ import annotations

from broker.rates import WINDOW, Rates
from broker.vhost import VHost

from .conftest import RecordingConsumer, message


def test_rates_and_totals_follow_the_queue_counters(vhost: VHost) -> None:
    rates = Rates({"/": vhost})
    queue = vhost.declare_queue("q")
    rates.sample(0.0)
    for _ in range(10):
        vhost.publish(message("", "q"))
    rates.sample(2.0)
    assert rates.of_queue(queue) == (5.0, 0.0)
    assert rates.overall.rates() == (5.0, 0.0)
    queue.add_consumer(RecordingConsumer(no_ack=True))
    rates.sample(3.0)
    assert rates.of_queue(queue) == (10 / 3, 10 / 3)
    assert (rates.published, rates.delivered) == (10, 10)


def test_totals_keep_what_deleted_queues_counted(vhost: VHost) -> None:
    rates = Rates({"/": vhost})
    vhost.declare_queue("gone")
    vhost.publish(message("", "gone"))
    rates.sample(0.0)
    vhost.delete_queue("gone")
    again = vhost.declare_queue("gone")
    vhost.publish(message("", "gone"))
    rates.sample(1.0)
    assert rates.published == 2
    assert rates.of_queue(again) == (0.0, 0.0)  # a new queue: one sample so far


def test_a_rate_spans_the_last_few_samples(vhost: VHost) -> None:
    rates = Rates({"/": vhost})
    queue = vhost.declare_queue("q")
    vhost.publish(message("", "q"))
    for second in range(WINDOW + 3):
        rates.sample(float(second))
    assert rates.of_queue(queue) == (0.0, 0.0)
