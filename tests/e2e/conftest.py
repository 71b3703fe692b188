"""Fixtures: the broker under test as a subprocess, TLS certificates, MQTT and AMQP clients.

BROKER_UNDER_TEST=ours (default) runs `python -m broker serve`; BROKER_UNDER_TEST=mosquitto
runs Debian's Mosquitto with an equivalent configuration, to check the MQTT tests
themselves, and BROKER_UNDER_TEST=rabbitmq Debian's RabbitMQ, to check the AMQP tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from . import amqp
from .brokers import (
    DEFAULT_CONFIG,
    ON_MOSQUITTO,
    ON_RABBITMQ,
    BrokerError,
    BrokerFactory,
    BrokerProcess,
    Certs,
    launcher,
    merge,
)
from .clients import Clients
from .mqtt5 import FEATURES
from .wsnative import native  # noqa: F401  (fixture)
from .xmpp import xmpp, xmpp_broker  # noqa: F401  (fixtures)

E2E_DIR = Path(__file__).parent
BROKERS_KEY = pytest.StashKey[list[BrokerProcess]]()
# a shared broker a test used, and how many lines of its log predate the test
SHARED_BROKER_KEY = pytest.StashKey[tuple[BrokerProcess, int]]()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A trustme CA and a server certificate for 127.0.0.1 and localhost, as files."""
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(paths.ca))
    server.private_key_pem.write_to_path(str(paths.key))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(paths.cert), append=i > 0)
    return paths


@pytest.fixture
def broker_factory(
    request: pytest.FixtureRequest, tmp_path: Path, certs: Certs
) -> Iterator[BrokerFactory]:
    """broker_factory(overrides=None, tls=False) starts a broker and returns it once ready.

    `overrides` is merged into DEFAULT_CONFIG (our TOML schema); `tls=True` adds the mqtts
    listener with the trustme certificate. Brokers are stopped at teardown and their logs
    are attached to the report of a failed test.
    """
    started: list[BrokerProcess] = []
    request.node.stash[BROKERS_KEY] = started

    def factory(overrides: dict[str, Any] | None = None, *, tls: bool = False) -> BrokerProcess:
        config = merge(DEFAULT_CONFIG, overrides or {})
        if tls:
            config["listeners"]["mqtts"] = "127.0.0.1:0"
            config["tls"] = {"cert": str(certs.cert), "key": str(certs.key)}
        broker = launcher()(tmp_path / f"broker{len(started)}", config)
        started.append(broker)
        broker.start()
        return broker

    yield factory
    failures = []
    for broker in started:
        if broker.running:
            try:
                broker.terminate()
            except BrokerError as exc:
                failures.append(exc)
    if failures:
        raise failures[0]


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> BrokerProcess:
    """A broker with the default configuration."""
    return broker_factory()


@pytest.fixture
def clients() -> Iterator[Clients]:
    pool = Clients()
    yield pool
    pool.close_all()


def shared_broker_scope(fixture_name: str, config: pytest.Config) -> str:
    """RabbitMQ takes seconds to start, so one serves the whole session; ours is fast, so
    each module gets its own and a broker a module breaks does not fail the others."""
    return "session" if ON_RABBITMQ else "module"


@pytest.fixture(scope=shared_broker_scope)
def shared_amqp_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    broker = launcher()(tmp_path_factory.mktemp("amqp-broker"), DEFAULT_CONFIG)
    broker.start()
    if not broker.amqp_port:
        broker.kill()
        raise BrokerError(f"ready, but no amqp listener logged:\n{broker.log_text()}")
    yield broker
    if broker.running:
        broker.terminate()


@pytest.fixture
def amqp_broker(request: pytest.FixtureRequest, shared_amqp_broker: BrokerProcess) -> BrokerProcess:
    """A running broker with the default configuration, shared with other AMQP tests (use
    unique queue and exchange names); its log lines of this test go into a failure report."""
    assert shared_amqp_broker.running, "the shared broker has died"
    request.node.stash[SHARED_BROKER_KEY] = (shared_amqp_broker, len(shared_amqp_broker.log))
    return shared_amqp_broker


@pytest.fixture
def amqp_clients(amqp_broker: BrokerProcess) -> Iterator[amqp.PikaClients]:
    """pika connections to the shared broker, closed at teardown."""
    pool = amqp.PikaClients(amqp_broker)
    yield pool
    pool.close_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for i, broker in enumerate(item.stash.get(BROKERS_KEY, [])):
            report.sections.append((f"broker {i} output ({call.when})", broker.log_text()))
        if shared := item.stash.get(SHARED_BROKER_KEY, None):
            broker, start = shared
            lines = "\n".join(broker.log[start:])
            report.sections.append((f"shared broker output during the test ({call.when})", lines))
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mqtt5(feature): the MQTT 5 feature of tests/e2e/mqtt5.py FEATURES a test shows",
    )
    config.addinivalue_line(
        "markers",
        "amqp(feature): the AMQP 0-9-1 feature of tests/e2e/amqp.py FEATURES a test shows;"
        " RabbitMQ runs every one but the cross-protocol ones, Mosquitto none",
    )


def amqp_skip_reason(feature: str) -> str | None:
    """Why an AMQP test of `feature` does not run against the broker under test, if so."""
    if ON_MOSQUITTO:
        return "Mosquitto speaks no AMQP"
    if ON_RABBITMQ and feature == "cross-protocol":
        return "RabbitMQ: the protocol mapping under test is ours (SPEC, where protocols meet)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if marker := item.get_closest_marker("amqp"):
            feature = marker.args[0]
            assert feature in amqp.FEATURES, f"{item.nodeid}: unknown AMQP feature {feature!r}"
            if reason := amqp_skip_reason(feature):
                item.add_marker(pytest.mark.skip(reason=reason))
            continue
        if (ON_RABBITMQ or ON_MOSQUITTO) and item.path.name.startswith("test_xmpp"):
            item.add_marker(pytest.mark.skip(reason="XMPP is tested against ours only"))
            continue
        if ON_RABBITMQ and E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.skip(reason="RabbitMQ runs only the AMQP tests"))
            continue
        marker = item.get_closest_marker("mqtt5")
        if marker is None:
            continue
        feature = marker.args[0]
        assert feature in FEATURES, f"{item.nodeid}: unknown MQTT 5 feature {feature!r}"
