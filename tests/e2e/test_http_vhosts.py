"""Vhosts created and deleted through the management API (RabbitMQ's PUT/DELETE
/api/vhosts/{name}) against a real broker: pika works in a new vhost once the user has
permissions there, the vhost with its durable queue and persistent messages survives a
graceful restart and a SIGKILL, and deleting it closes its AMQP connections with
connection.close 320 and forgets it.  The default vhost cannot be deleted; changes need an
administrator (403) with credentials (401)."""

from __future__ import annotations

from urllib.parse import quote

import amqp as pyamqp
import pika
import pika.exceptions
import pytest

from .amqp import NOT_ALLOWED, PikaClients, connection_closed, get_all, message_count
from .brokers import ALICE, DEFAULT_CONFIG, BrokerFactory, BrokerProcess
from .test_http_api import ADMIN_USER, TIMEOUT, Api

PERSISTENT = pika.BasicProperties(delivery_mode=2)
ALL = {"configure": ".*", "write": ".*", "read": ".*"}


@pytest.fixture
def api_broker(broker_factory: BrokerFactory) -> BrokerProcess:
    """The default broker plus an administrator, root."""
    return broker_factory({"users": [*DEFAULT_CONFIG["users"], ADMIN_USER]})


@pytest.fixture
def api(api_broker: BrokerProcess) -> Api:
    return Api(api_broker)


def path(name: str) -> str:
    return f"/api/vhosts/{quote(name, safe='')}"


def create_for_alice(api: Api, name: str) -> None:
    assert api.status("PUT", path(name)) == 201
    assert api.status("PUT", f"/api/permissions/{quote(name, safe='')}/alice", ALL) == 201


def refused_by_pika(broker: BrokerProcess, vhost: str) -> None:
    clients = PikaClients(broker)
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        clients.connection(virtual_host=vhost)


def test_a_vhost_is_created_described_and_listed(api: Api, api_broker: BrokerProcess) -> None:
    assert api.status("GET", path("shop")) == 404
    assert api.status("PUT", path("shop"), {"description": "the shop", "tags": "a,b"}) == 201
    assert api.status("PUT", path("shop")) == 204  # idempotent, metadata kept
    described = api.get(path("shop"))
    assert (described["name"], described["description"], described["tags"]) == (
        "shop",
        "the shop",
        ["a", "b"],
    )
    assert described["messages"] == 0
    assert [v["name"] for v in api.get("/api/vhosts")] == ["/", "shop"]

    alice = Api(api_broker, ALICE)
    assert [v["name"] for v in alice.get("/api/vhosts")] == ["/"]  # no permissions there
    assert alice.status("GET", path("shop")) == 403
    assert api.status("PUT", "/api/permissions/shop/alice", ALL) == 201
    assert alice.get(path("shop"))["name"] == "shop"


def test_pika_uses_a_new_vhost_and_its_messages_survive_restart_and_kill(
    api: Api, api_broker: BrokerProcess
) -> None:
    refused_by_pika(api_broker, "orders")  # no such vhost yet
    assert api.status("PUT", path("orders")) == 201
    refused_by_pika(api_broker, "orders")  # alice has no permissions there yet
    assert api.status("PUT", "/api/permissions/orders/alice", ALL) == 201

    clients = PikaClients(api_broker)
    channel = clients.channel(virtual_host="orders")
    channel.confirm_delivery()
    channel.queue_declare("work", durable=True)
    for n in range(3):
        channel.basic_publish("", "work", f"job {n}".encode(), PERSISTENT)
    assert message_count(channel, "work") == 3
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):  # not in the default vhost
        clients.channel().queue_declare("work", passive=True)
    clients.close_all()

    assert api_broker.terminate() == 0
    api_broker.start()
    assert api.get(path("orders"))["messages"] == 3
    clients = PikaClients(api_broker)
    channel = clients.channel(virtual_host="orders")
    channel.confirm_delivery()
    channel.basic_publish("", "work", b"job 3", PERSISTENT)
    assert api.status("PUT", path("empty")) == 201  # answered once on disk
    api_broker.kill()

    api_broker.start()
    assert api.get(path("empty"))["name"] == "empty"
    clients = PikaClients(api_broker)
    try:
        channel = clients.channel(virtual_host="orders")
        assert get_all(channel, "work") == [f"job {n}".encode() for n in range(4)]
    finally:
        clients.close_all()


def test_deleting_a_vhost_closes_its_connections_and_forgets_it(
    api: Api, api_broker: BrokerProcess
) -> None:
    create_for_alice(api, "doomed")
    clients = PikaClients(api_broker)
    try:
        victim = clients.connection(virtual_host="doomed")
        channel = victim.channel()
        channel.confirm_delivery()
        channel.queue_declare("q", durable=True)
        channel.basic_publish("", "q", b"gone with the vhost", PERSISTENT)
        bystander = clients.connection()

        assert api.status("DELETE", path("doomed")) == 204
        with connection_closed(320):
            victim.process_data_events(time_limit=TIMEOUT)
        assert bystander.is_open
        bystander.process_data_events(time_limit=0)
    finally:
        clients.close_all()

    assert api.status("GET", path("doomed")) == 404
    assert api.status("DELETE", path("doomed")) == 404
    assert api.status("GET", "/api/permissions/doomed/alice") == 404
    assert "doomed" not in [v["name"] for v in api.get("/api/vhosts")]
    assert [q for q in api.get("/api/queues") if q["vhost"] == "doomed"] == []
    refused_by_pika(api_broker, "doomed")
    connection = pyamqp.Connection(
        f"{api_broker.host}:{api_broker.amqp_port}",
        userid=ALICE[0],
        password=ALICE[1],
        virtual_host="doomed",
    )
    with pytest.raises(pyamqp.exceptions.NotAllowed) as info:
        connection.connect()
    assert info.value.reply_code == NOT_ALLOWED

    assert api_broker.terminate() == 0
    api_broker.start()
    assert api.status("GET", path("doomed")) == 404
    create_for_alice(api, "doomed")  # the name again: an empty vhost
    clients = PikaClients(api_broker)
    try:
        channel = clients.channel(virtual_host="doomed")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            channel.queue_declare("q", passive=True)
    finally:
        clients.close_all()


def test_the_default_vhost_cannot_be_deleted(api: Api) -> None:
    status, value, _ = api.request("DELETE", path("/"))
    assert (status, value["error"]) == (400, "bad_request"), value
    assert "cannot be deleted" in value["reason"]
    assert api.get(path("/"))["name"] == "/"


def test_bad_names_and_bodies_are_refused(api: Api) -> None:
    assert api.status("PUT", path("x" * 256)) == 400
    assert api.status("PUT", path("a\tb")) == 400
    assert api.status("PUT", path("typed"), {"description": 7}) == 400
    assert api.status("PUT", path("typed"), {"tags": {"not": "tags"}}) == 400
    assert api.status("GET", path("typed")) == 404


def test_changes_need_an_administrator_with_credentials(
    api: Api, api_broker: BrokerProcess
) -> None:
    assert api.status("PUT", path("kept")) == 201
    for auth, expected in ((ALICE, 403), (None, 401), (("root", "wrong"), 401)):
        client = Api(api_broker, auth)
        assert client.status("PUT", path("other")) == expected, auth
        assert client.status("DELETE", path("kept")) == expected, auth
    assert Api(api_broker, None).status("GET", path("kept")) == 401
    assert api.status("GET", path("other")) == 404
    assert api.get(path("kept"))["name"] == "kept"
