"""Transactions: tx.select, commit and rollback for publishes and for acks."""

from __future__ import annotations

import pytest

from .amqp import (
    PRECONDITION_FAILED,
    PikaClients,
    channel_closed,
    get,
    get_all,
    message_count,
)

pytestmark = pytest.mark.amqp("tx")


def test_publishes_wait_for_commit_and_vanish_on_rollback(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    observer = connection.channel()
    queue = observer.queue_declare("", exclusive=True).method.queue
    channel = connection.channel()
    channel.tx_select()
    channel.basic_publish("", queue, b"rolled back")
    assert message_count(observer, queue) == 0  # nothing before the commit
    channel.tx_rollback()
    channel.basic_publish("", queue, b"1")
    channel.basic_publish("", queue, b"2")
    assert message_count(observer, queue) == 0
    channel.tx_commit()
    assert get_all(observer, queue) == [b"1", b"2"]
    channel.basic_publish("", queue, b"next transaction")  # still transactional
    channel.tx_rollback()
    assert message_count(observer, queue) == 0


def test_acks_take_effect_on_commit_only(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    observer = connection.channel()
    queue = observer.queue_declare("", exclusive=True).method.queue
    observer.basic_publish("", queue, b"m")

    channel = connection.channel()
    channel.tx_select()
    tag = get(channel, queue, auto_ack=False).method.delivery_tag
    channel.basic_ack(tag)
    channel.tx_rollback()  # the ack is undone: the message is still unacked
    channel.close()
    requeued = get(observer, queue, auto_ack=False)
    assert (requeued.body, requeued.method.redelivered) == (b"m", True)
    observer.basic_reject(requeued.method.delivery_tag, requeue=True)

    channel = connection.channel()
    channel.tx_select()
    channel.basic_ack(get(channel, queue, auto_ack=False).method.delivery_tag)
    channel.tx_commit()
    channel.close()
    assert message_count(observer, queue) == 0


def test_commit_without_select_is_406(amqp_clients: PikaClients) -> None:
    with channel_closed(PRECONDITION_FAILED):
        amqp_clients.channel().tx_commit()
