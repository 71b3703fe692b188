"""Fixtures: the broker under test as a subprocess, TLS certificates, and MQTT clients.

BROKER_UNDER_TEST=ours (default) runs `python -m broker serve`; BROKER_UNDER_TEST=mosquitto
runs Debian's Mosquitto with an equivalent configuration, to check the tests themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from .brokers import (
    DEFAULT_CONFIG,
    ON_MOSQUITTO,
    BrokerError,
    BrokerFactory,
    BrokerProcess,
    Certs,
    Mosquitto,
    OurBroker,
    merge,
)
from .clients import Clients
from .mqtt5 import FEATURES, OURS_MQTT5

BROKERS_KEY = pytest.StashKey[list[BrokerProcess]]()


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
        launcher = Mosquitto if ON_MOSQUITTO else OurBroker
        broker = launcher(tmp_path / f"broker{len(started)}", config)
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for i, broker in enumerate(item.stash.get(BROKERS_KEY, [])):
            report.sections.append((f"broker {i} output ({call.when})", broker.log_text()))
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mqtt5(feature): an MQTT 5 feature test; against our broker it is skipped until the"
        " feature is in OURS_MQTT5 (tests/e2e/mqtt5.py)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("mqtt5")
        if marker is None:
            continue
        feature = marker.args[0]
        assert feature in FEATURES, f"{item.nodeid}: unknown MQTT 5 feature {feature!r}"
        if not ON_MOSQUITTO and feature not in OURS_MQTT5:
            item.add_marker(pytest.mark.skip(reason=f"MQTT 5 feature {feature!r} not in ours yet"))
