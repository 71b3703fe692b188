"""Our own `broker pub` and `broker sub` (broker/clitools.py) against the broker under test.

The tools run as subprocesses (`python -m broker pub|sub ...`), exactly as a user runs them;
with BROKER_UNDER_TEST=mosquitto the same tests check them against Mosquitto.

Synchronizing with `broker sub` without sleeping: it prints nothing until a message
arrives, so each test that publishes to a running `broker sub` first stores a retained
"ready" message on a topic its filter matches. A broker delivers retained messages only once
the subscription exists, so when `broker sub` has printed that message, everything published
afterwards is routed to it. Every wait is bounded by TIMEOUT.
"""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from .brokers import ALICE, ON_MOSQUITTO, REPO_ROOT, BrokerFactory, BrokerProcess, Certs
from .clients import Clients

TIMEOUT = 15
READY = "ready"

# We refuse a wrong password with CONNACK code 4 (bad user name or password), Mosquitto
# with 5 (not authorized); see test_mqtt_auth_tls.py.
BAD_CREDENTIALS = (
    ("bad username or password", "not authorized")
    if ON_MOSQUITTO
    else ("bad username or password",)
)


def broker_command(tool: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "broker", tool, *args, "--timeout", str(TIMEOUT)]


def connection_args(broker: BrokerProcess, ca_file: str | None = None) -> list[str]:
    if ca_file is None:
        return ["-H", broker.host, "-p", str(broker.mqtt_port)]
    assert broker.mqtts_port, "no mqtts listener"
    return ["-H", broker.host, "-p", str(broker.mqtts_port), "--cafile", ca_file]


def broker_pub(
    broker: BrokerProcess, topic: str, message: str, *args: str, ca_file: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `broker pub` to completion."""
    return subprocess.run(
        broker_command("pub", topic, message, *connection_args(broker, ca_file), *args),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=REPO_ROOT,
    )


def assert_published(result: subprocess.CompletedProcess[str]) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def assert_refused(result: subprocess.CompletedProcess[str], *reasons: str) -> None:
    """A non-zero exit with one clear line naming one of `reasons`, and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    message = result.stderr.strip()
    assert message.startswith("broker: "), message
    assert "\n" not in message, message
    assert any(reason in message for reason in reasons), message


class BrokerSub:
    """`broker sub` in the background; its output lines (stderr too) are queued as they come."""

    def __init__(self, broker: BrokerProcess, *args: str, ca_file: str | None = None) -> None:
        self.proc = subprocess.Popen(
            broker_command("sub", *connection_args(broker, ca_file), *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO_ROOT,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next_line(self) -> str:
        """The next line printed; fails the test if none comes in time."""
        try:
            line = self._lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("broker sub printed nothing:\n" + self.transcript()) from None
        assert line is not None, "broker sub exited:\n" + self.transcript()
        return line

    def wait_ready(self, topic: str) -> None:
        """Wait for the retained READY message on `topic` (printed with -v)."""
        assert self.next_line() == f"{topic} {READY}", self.transcript()

    def finish(self) -> list[str]:
        """Wait for a zero exit (after -C messages); the lines not yet read."""
        assert self.proc.wait(TIMEOUT) == 0, self.transcript()
        return self._rest()

    def failure(self) -> subprocess.CompletedProcess[str]:
        """Wait for a non-zero exit; what it printed not yet read is the result's stderr."""
        assert self.proc.wait(TIMEOUT) != 0, self.transcript()
        return subprocess.CompletedProcess(
            self.proc.args, self.proc.returncode, "", "\n".join(self._rest())
        )

    def _rest(self) -> list[str]:
        lines = []
        while (line := self._lines.get(timeout=TIMEOUT)) is not None:
            lines.append(line)
        return lines

    def transcript(self) -> str:
        return "\n".join(self.output)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)


@pytest.fixture
def broker_subs() -> Iterator[list[BrokerSub]]:
    started: list[BrokerSub] = []
    yield started
    for sub in started:
        sub.close()


def start_sub(
    subs: list[BrokerSub], broker: BrokerProcess, *args: str, ca_file: str | None = None
) -> BrokerSub:
    sub = BrokerSub(broker, *args, ca_file=ca_file)
    subs.append(sub)
    return sub


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_to_sub(
    broker: BrokerProcess, clients: Clients, broker_subs: list[BrokerSub], qos: int
) -> None:
    clients.paho(broker).publish("cli/ready", READY, qos=1, retain=True)
    sub = start_sub(broker_subs, broker, "cli/#", "-q", str(qos), "-C", "4", "-v")
    sub.wait_ready("cli/ready")
    for payload in ("one", "two", "three"):
        assert_published(broker_pub(broker, "cli/t", payload, "-q", str(qos)))
    # Separate connections: QoS 0 messages from one `broker pub` may overtake another's.
    assert sorted(sub.finish()) == ["cli/t one", "cli/t three", "cli/t two"]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_delivers_at_its_qos(broker: BrokerProcess, clients: Clients, qos: int) -> None:
    paho = clients.paho(broker)
    assert paho.subscribe(("cli/t", 2)) == [2]
    assert_published(broker_pub(broker, "cli/t", "hello wörld", "-q", str(qos)))
    msg = paho.get()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (
        "cli/t",
        "hello wörld".encode(),
        qos,
        False,
    )


@pytest.mark.parametrize("qos", [1, 2])
def test_sub_acknowledges_every_message(
    broker: BrokerProcess, clients: Clients, broker_subs: list[BrokerSub], qos: int
) -> None:
    """More QoS 1/2 messages than the broker lets be in flight (max_inflight 20): each is
    delivered only if `broker sub` completes the earlier ones' acknowledgement flows."""
    publisher = clients.paho(broker)
    publisher.publish("cli/ready", READY, qos=1, retain=True)
    sub = start_sub(broker_subs, broker, "cli/#", "-q", str(qos), "-C", "51", "-v")
    sub.wait_ready("cli/ready")
    for i in range(50):
        publisher.publish("cli/t", str(i), qos)
    assert sub.finish() == [f"cli/t {i}" for i in range(50)]


def test_retained_message_reaches_later_sub(
    broker: BrokerProcess, clients: Clients, broker_subs: list[BrokerSub]
) -> None:
    assert_published(broker_pub(broker, "cli/kept", "kept value", "-q", "1", "-r"))
    sub = start_sub(broker_subs, broker, "cli/#", "-C", "1", "-v")
    assert sub.finish() == ["cli/kept kept value"]
    paho = clients.paho(broker)
    assert paho.subscribe(("cli/kept", 1)) == [1]
    retained = paho.get()
    assert (retained.payload, retained.retain) == (b"kept value", True)


def test_empty_retained_message_clears(
    broker: BrokerProcess, clients: Clients, broker_subs: list[BrokerSub]
) -> None:
    publisher = clients.paho(broker)
    assert_published(broker_pub(broker, "cli/gone", "old", "-q", "1", "-r"))
    assert_published(broker_pub(broker, "cli/gone", "", "-q", "1", "-r"))
    publisher.publish("cli/ready", READY, qos=1, retain=True)
    sub = start_sub(broker_subs, broker, "cli/#", "-q", "1", "-C", "2", "-v")
    sub.wait_ready("cli/ready")
    # Retained messages go out together on SUBSCRIBE, so a stale "cli/gone" would come
    # before the live message.
    publisher.publish("cli/live", "live", qos=1)
    assert sub.finish() == ["cli/live live"]


def test_credentials(broker: BrokerProcess, clients: Clients, broker_subs: list[BrokerSub]) -> None:
    """private/# is readable and writable by alice only (DEFAULT_CONFIG's ACL)."""
    login = ["-u", ALICE[0], "-P", ALICE[1]]
    alice = clients.paho(broker, username=ALICE[0], password=ALICE[1])
    alice.publish("private/ready", READY, qos=1, retain=True)
    sub = start_sub(broker_subs, broker, "private/#", *login, "-q", "1", "-C", "2", "-v")
    sub.wait_ready("private/ready")
    wrong = broker_pub(broker, "private/t", "x", "-u", ALICE[0], "-P", "wrong", "-q", "1")
    assert_refused(wrong, *BAD_CREDENTIALS)
    assert_published(broker_pub(broker, "private/t", "ok", *login, "-q", "1"))
    assert sub.finish() == ["private/t ok"]


def test_sub_with_wrong_password_exits(broker: BrokerProcess, broker_subs: list[BrokerSub]) -> None:
    sub = start_sub(broker_subs, broker, "cli/#", "-u", ALICE[0], "-P", "wrong", "-C", "1")
    assert_refused(sub.failure(), *BAD_CREDENTIALS)


def test_tls_with_cafile(
    broker_factory: BrokerFactory, broker_subs: list[BrokerSub], certs: Certs
) -> None:
    broker = broker_factory(tls=True)
    ca = str(certs.ca)
    assert_published(broker_pub(broker, "cli/t", "secure", "-q", "1", "-r", ca_file=ca))
    sub = start_sub(broker_subs, broker, "cli/#", "-q", "1", "-C", "1", "-v", ca_file=ca)
    assert sub.finish() == ["cli/t secure"]


def test_tls_without_trusted_ca_is_refused(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(tls=True)
    assert broker.mqtts_port
    result = subprocess.run(
        broker_command(
            "pub", "cli/t", "x", "-H", broker.host, "-p", str(broker.mqtts_port), "--tls"
        ),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=REPO_ROOT,
    )
    assert_refused(result, "certificate verify failed")


def test_unreachable_broker_is_a_clear_error() -> None:
    # A bound socket that is not listening: connections to its port are refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        result = subprocess.run(
            broker_command("pub", "cli/t", "x", "-p", str(port)),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=REPO_ROOT,
        )
    assert_refused(result, "cannot connect to 127.0.0.1:")


def test_sub_keeps_an_idle_connection_alive(
    broker: BrokerProcess, clients: Clients, broker_subs: list[BrokerSub]
) -> None:
    """With keepalive 2 s the broker drops a client silent for 3 s (1.5 times the keepalive);
    `broker sub` must send PINGREQ while idle. The 5 s wait is the idle period under test,
    not a synchronization: the sub only exits early if the broker disconnects it. (Mosquitto
    checks keepalives lazily, dropping such a client only after about 5 s, so there this test
    checks the test rather than the tool.)"""
    publisher = clients.paho(broker)
    publisher.publish("cli/ready", READY, qos=1, retain=True)
    sub = start_sub(broker_subs, broker, "cli/#", "-k", "2", "-C", "2", "-v")
    sub.wait_ready("cli/ready")
    with pytest.raises(subprocess.TimeoutExpired):
        sub.proc.wait(5)
    publisher.publish("cli/t", "still here", qos=1)
    assert sub.finish() == ["cli/t still here"]
