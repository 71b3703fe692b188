"""kombu (py-amqp underneath) producer/consumer round trip, and a celery worker, started
as a subprocess against the broker, running a task and returning its result over rpc://.

The worker imports this module for its tasks: `worker_app` reads the broker URL from the
environment the test gives the subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import celery
import kombu
import pytest

from .amqp import TIMEOUT, unique
from .brokers import ALICE, REPO_ROOT, BrokerProcess

BROKER_URL_VARIABLE = "E2E_CELERY_BROKER_URL"
WORKER_TIMEOUT = 30.0

worker_app = celery.Celery(
    "e2e", broker=os.environ.get(BROKER_URL_VARIABLE, "memory://"), backend="rpc://"
)


@worker_app.task(name="e2e.add")
def add(x: int, y: int) -> int:
    return x + y


def celery_url(broker: BrokerProcess) -> str:
    """kombu's URL form: the path after the second slash is the vhost, "/" here."""
    return f"amqp://{ALICE[0]}:{ALICE[1]}@{broker.host}:{broker.amqp_port}//"


def kombu_connection(broker: BrokerProcess) -> kombu.Connection:
    return kombu.Connection(celery_url(broker), connect_timeout=TIMEOUT)


@pytest.mark.amqp("kombu")
def test_kombu_producer_consumer_round_trip(amqp_broker: BrokerProcess) -> None:
    exchange = kombu.Exchange(unique("kombu-x"), "direct", auto_delete=True)
    queue = kombu.Queue(unique("kombu-q"), exchange, routing_key="jobs", auto_delete=True)
    received: list[tuple[Any, kombu.Message]] = []
    with kombu_connection(amqp_broker) as connection:
        connection.ensure_connection(max_retries=1)
        with connection.Consumer(queue, callbacks=[lambda body, msg: received.append((body, msg))]):
            producer = connection.Producer()
            producer.publish(
                {"job": 1, "items": ["a", "b"]},
                exchange=exchange,
                routing_key="jobs",
                serializer="json",
                headers={"origin": "kombu"},
                declare=[queue],
            )
            connection.drain_events(timeout=TIMEOUT)
            body, message = received[0]
            message.ack()
        assert body == {"job": 1, "items": ["a", "b"]}
        assert (message.content_type, message.headers["origin"]) == ("application/json", "kombu")


@pytest.mark.amqp("kombu")
def test_kombu_simple_queue(amqp_broker: BrokerProcess) -> None:
    with kombu_connection(amqp_broker) as connection:
        simple = connection.SimpleQueue(unique("simple"), queue_opts={"auto_delete": True})
        simple.put({"hello": "world"})
        message = simple.get(block=True, timeout=TIMEOUT)
        message.ack()
        assert message.payload == {"hello": "world"}
        simple.close()


@pytest.mark.amqp("celery")
def test_celery_worker_runs_a_task_and_returns_its_result(
    amqp_broker: BrokerProcess, tmp_path: Path
) -> None:
    queue = unique("celery")
    log = tmp_path / "worker.log"
    url = celery_url(amqp_broker)
    command = [
        *(sys.executable, "-m", "celery"),
        *("-A", f"{__name__}:worker_app", "worker"),
        # broker heartbeats stay on: they also wake the worker's loop to notice a SIGTERM
        *("--pool=solo", "--without-gossip", "--without-mingle"),
        *("-Q", queue, "-n", f"{queue}@localhost", "--loglevel=INFO"),
    ]
    with log.open("w") as out:
        worker = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, BROKER_URL_VARIABLE: url},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = celery.Celery(broker=url, backend="rpc://")
    client.conf.update(broker_connection_timeout=TIMEOUT, task_publish_retry=False)
    try:
        result = client.send_task("e2e.add", args=(2, 3), queue=queue)
        try:
            assert result.get(timeout=WORKER_TIMEOUT) == 5
        except Exception as exc:
            raise AssertionError(f"no result: {exc!r}; worker log:\n{log.read_text()}") from exc
    finally:
        client.close()
        worker.terminate()  # a warm shutdown
        try:
            worker.wait(WORKER_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
