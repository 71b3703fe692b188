"""Debian's mosquitto_pub and mosquitto_sub against the broker."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Iterator

import pytest

from .brokers import ALICE, BrokerFactory, BrokerProcess, Certs
from .clients import Clients

TOPIC = "cli/t"
TIMEOUT = 15


def connection_args(broker: BrokerProcess, ca_file: str | None = None) -> list[str]:
    if ca_file is None:
        return ["-h", broker.host, "-p", str(broker.mqtt_port)]
    return ["-h", broker.host, "-p", str(broker.mqtts_port), "--cafile", ca_file]


class MosquittoSub:
    """mosquitto_sub in debug mode, line-buffered, so the test can wait for its SUBACK."""

    def __init__(self, broker: BrokerProcess, *args: str, ca_file: str | None = None) -> None:
        command = [
            "stdbuf",
            "-oL",
            "mosquitto_sub",
            "-d",
            "-F",
            "MSG %q %r %t %p",
            "-W",
            str(TIMEOUT),
        ]
        self.proc = subprocess.Popen(
            [*command, *connection_args(broker, ca_file), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            self._lines.put(line)

    def wait_subscribed(self) -> None:
        try:
            while "received SUBACK" not in self._lines.get(timeout=TIMEOUT):
                pass
        except queue.Empty:
            raise AssertionError("no SUBACK:\n" + "\n".join(self.output)) from None

    def messages(self) -> list[tuple[int, bool, str, str]]:
        """Wait for the exit (after -C messages) and return (qos, retain, topic, payload)s."""
        assert self.proc.wait(TIMEOUT) == 0, "\n".join(self.output)
        self._drainer.join(TIMEOUT)  # the exit can come before the last lines are read
        parsed = []
        for line in self.output:
            if line.startswith("MSG "):
                qos, retain, topic, payload = line.split(" ", 4)[1:]
                parsed.append((int(qos), retain == "1", topic, payload))
        return parsed

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def mosquitto_subs() -> Iterator[list[MosquittoSub]]:
    started: list[MosquittoSub] = []
    yield started
    for sub in started:
        sub.close()


def mosquitto_pub(
    broker: BrokerProcess, *args: str, stdin: str | None = None, ca_file: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mosquitto_pub", *connection_args(broker, ca_file), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_to_mosquitto_sub(
    broker: BrokerProcess, mosquitto_subs: list[MosquittoSub], qos: int
) -> None:
    sub = MosquittoSub(broker, "-t", TOPIC, "-q", str(qos), "-C", "3")
    mosquitto_subs.append(sub)
    sub.wait_subscribed()
    result = mosquitto_pub(broker, "-t", TOPIC, "-q", str(qos), "-l", stdin="one\ntwo\nthree\n")
    assert result.returncode == 0, result.stderr
    assert sub.messages() == [(qos, False, TOPIC, p) for p in ("one", "two", "three")]


def test_mosquitto_pub_qos2_to_paho(broker: BrokerProcess, clients: Clients) -> None:
    sub = clients.paho(broker)
    assert sub.subscribe((TOPIC, 2)) == [2]
    assert mosquitto_pub(broker, "-t", TOPIC, "-q", "2", "-m", "hello").returncode == 0
    msg = sub.get()
    assert (msg.topic, msg.payload, msg.qos) == (TOPIC, b"hello", 2)


def test_mosquitto_sub_gets_retained_from_paho(
    broker: BrokerProcess, clients: Clients, mosquitto_subs: list[MosquittoSub]
) -> None:
    clients.paho(broker).publish(TOPIC, b"retained value", qos=1, retain=True)
    sub = MosquittoSub(broker, "-t", "cli/#", "-q", "1", "-C", "1")
    mosquitto_subs.append(sub)
    assert sub.messages() == [(1, True, TOPIC, "retained value")]


def test_mosquitto_tools_with_credentials(
    broker: BrokerProcess, mosquitto_subs: list[MosquittoSub]
) -> None:
    login = ["-u", ALICE[0], "-P", ALICE[1]]
    sub = MosquittoSub(broker, *login, "-t", "private/t", "-q", "1", "-C", "1")
    mosquitto_subs.append(sub)
    sub.wait_subscribed()
    wrong = mosquitto_pub(broker, "-u", ALICE[0], "-P", "wrong", "-t", "private/t", "-m", "x")
    assert wrong.returncode != 0
    assert mosquitto_pub(broker, *login, "-t", "private/t", "-q", "1", "-m", "ok").returncode == 0
    assert sub.messages() == [(1, False, "private/t", "ok")]


def test_mosquitto_tools_over_tls(
    broker_factory: BrokerFactory, certs: Certs, mosquitto_subs: list[MosquittoSub]
) -> None:
    broker = broker_factory(tls=True)
    ca = str(certs.ca)
    result = mosquitto_pub(broker, "-t", TOPIC, "-q", "1", "-r", "-m", "secure", ca_file=ca)
    assert result.returncode == 0, result.stderr
    sub = MosquittoSub(broker, "-t", TOPIC, "-q", "1", "-C", "1", ca_file=ca)
    mosquitto_subs.append(sub)
    assert sub.messages() == [(1, True, TOPIC, "secure")]
