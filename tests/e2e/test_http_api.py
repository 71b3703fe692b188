"""The management API under /api/ (RabbitMQ's shapes) and `broker status`, against a real
broker with real clients: paho and pika connections listed and closed, a message published
through the API reaching a paho subscriber, every endpoint refusing missing or wrong
credentials (401) and non-administrators' changes (403)."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
from typing import Any
from urllib.parse import quote

import pika
import pytest

from .amqp import PikaClients, connection_closed
from .brokers import ALICE, DEFAULT_CONFIG, NOPERM, REPO_ROOT, BrokerFactory, BrokerProcess
from .clients import Clients
from .xmpp import XmppClients, wait, xmpp_config

TIMEOUT = 10.0
ADMIN = ("root", "rootpw")
ADMIN_USER = {
    "name": ADMIN[0],
    "password": ADMIN[1],
    "tags": ["administrator"],
    "permissions": {"/": {"configure": ".*", "write": ".*", "read": ".*"}},
}
Auth = tuple[str, str] | None


class Api:
    """JSON requests to one broker's management API as one user."""

    def __init__(self, broker: BrokerProcess, auth: Auth = ADMIN) -> None:
        assert broker.http_port, "no http listener"
        self.broker = broker
        self.auth = auth

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, http.client.HTTPResponse]:
        """(status, decoded JSON or None, response); ``raw`` is sent as the body as is."""
        conn = http.client.HTTPConnection(self.broker.host, self.broker.http_port, timeout=TIMEOUT)
        sent = dict(headers or {})
        if self.auth is not None:
            token = base64.b64encode(":".join(self.auth).encode()).decode()
            sent["Authorization"] = f"Basic {token}"
        payload = raw if body is None else json.dumps(body).encode()
        if payload is not None:
            sent["Content-Type"] = "application/json"
        try:
            conn.request(method, path, payload, sent)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response.status, json.loads(data) if data else None, response

    def get(self, path: str) -> Any:
        status, value, _ = self.request("GET", path)
        assert status == 200, (path, status, value)
        return value

    def status(self, method: str, path: str, body: Any = None) -> int:
        return self.request(method, path, body)[0]


@pytest.fixture
def api_broker(broker_factory: BrokerFactory) -> BrokerProcess:
    """The default broker plus an administrator, root."""
    return broker_factory({"users": [*DEFAULT_CONFIG["users"], ADMIN_USER]})


@pytest.fixture
def api(api_broker: BrokerProcess) -> Api:
    return Api(api_broker)


#: every endpoint, with a body where it takes one
ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "/api/overview", None),
    ("GET", "/api/whoami", None),
    ("GET", "/api/vhosts", None),
    ("GET", "/api/connections", None),
    ("GET", "/api/connections/x", None),
    ("DELETE", "/api/connections/x", None),
    ("GET", "/api/exchanges", None),
    ("GET", "/api/exchanges/%2F", None),
    ("GET", "/api/exchanges/%2F/amq.topic", None),
    ("PUT", "/api/exchanges/%2F/api-x", {"type": "topic"}),
    ("DELETE", "/api/exchanges/%2F/api-x", None),
    ("POST", "/api/exchanges/%2F/amq.topic/publish", {"routing_key": "a", "payload": "x"}),
    ("GET", "/api/queues", None),
    ("GET", "/api/queues/%2F", None),
    ("GET", "/api/queues/%2F/api-q", None),
    ("PUT", "/api/queues/%2F/api-q", {}),
    ("DELETE", "/api/queues/%2F/api-q", None),
    ("DELETE", "/api/queues/%2F/api-q/contents", None),
    ("GET", "/api/bindings", None),
    ("GET", "/api/bindings/%2F", None),
    ("POST", "/api/bindings/%2F/e/amq.topic/q/api-q", {"routing_key": "k"}),
    ("DELETE", "/api/bindings/%2F/e/amq.topic/q/api-q/k", None),
    ("GET", "/api/users", None),
    ("GET", "/api/users/alice", None),
    ("PUT", "/api/users/api-u", {"password": "pw"}),
    ("DELETE", "/api/users/api-u", None),
    ("GET", "/api/users/alice/permissions", None),
    ("GET", "/api/permissions", None),
    ("GET", "/api/permissions/%2F/alice", None),
    ("PUT", "/api/permissions/%2F/alice", {"configure": "", "write": "", "read": ""}),
    ("DELETE", "/api/permissions/%2F/alice", None),
]
WRITES = [e for e in ENDPOINTS if e[0] != "GET"]


def test_every_endpoint_needs_valid_credentials(api_broker: BrokerProcess) -> None:
    for auth in (None, (ADMIN[0], "wrong"), ("nobody", "pw")):
        client = Api(api_broker, auth)
        for method, path, body in ENDPOINTS:
            status, value, response = client.request(method, path, body)
            assert status == 401, (auth, method, path, status)
            assert response.getheader("WWW-Authenticate", "").startswith("Basic "), path
            assert value["error"] == "not_authorized"


def test_scripts_get_no_browser_login_prompt(api_broker: BrokerProcess) -> None:
    headers = {"X-Requested-With": "XMLHttpRequest"}
    status, _, response = Api(api_broker, None).request("GET", "/api/overview", headers=headers)
    assert status == 401
    assert response.getheader("WWW-Authenticate") is None


def test_changes_need_an_administrator(api_broker: BrokerProcess) -> None:
    """alice may use vhost "/" but is no administrator: every change is refused."""
    Api(api_broker).status("PUT", "/api/queues/%2F/api-q", {})
    alice = Api(api_broker, ALICE)
    for method, path, body in WRITES:
        status, value, _ = alice.request(method, path, body)
        assert status == 403, (method, path, status, value)
    for path in ("/api/users", "/api/users/alice", "/api/permissions"):
        assert alice.status("GET", path) == 403, path
    assert alice.get("/api/whoami") == {"name": "alice", "tags": []}
    assert "api-q" in [q["name"] for q in alice.get("/api/queues")]


def test_users_without_vhost_access_see_nothing_in_it(api_broker: BrokerProcess) -> None:
    noperm = Api(api_broker, NOPERM)
    assert noperm.get("/api/whoami")["name"] == "noperm"
    assert noperm.get("/api/queues") == []
    assert noperm.get("/api/exchanges") == []
    assert noperm.get("/api/bindings") == []
    for path in ("/api/queues/%2F", "/api/exchanges/%2F/amq.topic", "/api/bindings/%2F"):
        assert noperm.status("GET", path) == 403, path


def test_guest_is_an_administrator_from_loopback(broker: BrokerProcess) -> None:
    guest = Api(broker, ("guest", "guest"))
    assert guest.get("/api/whoami") == {"name": "guest", "tags": ["administrator"]}


def test_unknown_paths_methods_and_bodies(api: Api) -> None:
    assert api.status("GET", "/api/nothing") == 404
    assert api.status("POST", "/api/overview") == 405
    assert api.status("GET", "/api/queues/no-such-vhost") == 404
    assert api.status("PUT", "/api/queues/%2F/api-defaults") == 201  # no body: defaults
    status, value, _ = api.request("PUT", "/api/queues/%2F/api-q", raw=b"{not json")
    assert (status, value["error"]) == (400, "bad_request")
    assert api.status("PUT", "/api/queues/%2F/api-q", ["a list"]) == 400


def test_overview_reports_listeners_connections_and_queues(
    api: Api, api_broker: BrokerProcess, clients: Clients
) -> None:
    for client_id in ("overview-1", "overview-2"):
        assert clients.paho(api_broker, client_id).subscribe(("overview/#", 0)) == [0]
    pika_clients = PikaClients(api_broker)
    try:
        pika_clients.connection()
        overview = api.get("/api/overview")
    finally:
        pika_clients.close_all()
    ports = {(item["protocol"], item["port"]) for item in overview["listeners"]}
    assert ("mqtt", api_broker.mqtt_port) in ports
    assert ("amqp", api_broker.amqp_port) in ports
    assert ("http", api_broker.http_port) in ports
    assert overview["connections_by_protocol"]["mqtt"] == 2
    assert overview["connections_by_protocol"]["amqp"] == 1
    assert overview["object_totals"]["connections"] == 3
    assert overview["object_totals"]["queues"] >= 2  # the MQTT sessions' queues, at least
    assert set(overview["queue_totals"]) == {
        "messages",
        "messages_ready",
        "messages_unacknowledged",
    }
    for name in ("publish", "deliver_get"):
        assert isinstance(overview["message_stats"][name], int)
        assert isinstance(overview["message_stats"][f"{name}_details"]["rate"], float)
    assert overview["product_name"] == "broker"


def test_queues_declared_filled_bound_purged_and_deleted(api: Api) -> None:
    path = "/api/queues/%2F/api-orders"
    assert api.status("PUT", path, {"durable": True, "arguments": {"x-max-length": 10}}) == 201
    assert api.status("PUT", path, {"durable": True, "arguments": {"x-max-length": 10}}) == 204
    assert api.status("PUT", path, {"durable": False}) == 400  # inequivalent
    publish = "/api/exchanges/%2F/amq.default/publish"
    body = {"routing_key": "api-orders", "payload": "one", "properties": {"delivery_mode": 2}}
    assert api.request("POST", publish, body)[1] == {"routed": True}
    binding = "/api/bindings/%2F/e/amq.topic/q/api-orders"
    status, _, response = api.request("POST", binding, {"routing_key": "orders.*"})
    assert status == 201
    assert response.getheader("Location") == "orders.*"
    topic_publish = "/api/exchanges/%2F/amq.topic/publish"
    assert api.request("POST", topic_publish, {"routing_key": "orders.new", "payload": "two"})[
        1
    ] == {"routed": True}
    queue = api.get(path)
    assert queue["name"] == "api-orders" and queue["vhost"] == "/"
    assert (queue["messages"], queue["messages_ready"], queue["messages_unacknowledged"]) == (
        2,
        2,
        0,
    )
    assert queue["consumers"] == 0 and queue["durable"] is True
    assert queue["arguments"] == {"x-max-length": 10}
    assert queue["message_stats"]["publish"] == 2
    assert isinstance(queue["message_stats"]["publish_details"]["rate"], float)
    bindings = api.get("/api/bindings/%2F")
    assert {
        "source": "amq.topic",
        "vhost": "/",
        "destination": "api-orders",
        "destination_type": "queue",
        "routing_key": "orders.*",
        "arguments": {},
        "properties_key": "orders.*",
    } in bindings
    assert api.status("DELETE", binding + "/" + quote("orders.*", safe="")) == 204
    assert api.request("POST", topic_publish, {"routing_key": "orders.new"})[1] == {"routed": False}
    assert api.status("DELETE", path + "?if-empty=true") == 400
    assert api.status("DELETE", path + "/contents") == 204
    assert api.get(path)["messages"] == 0
    assert api.status("DELETE", path) == 204
    assert api.status("GET", path) == 404
    assert "api-orders" not in [q["name"] for q in api.get("/api/queues")]


def test_exchanges_declared_listed_and_deleted(api: Api) -> None:
    path = "/api/exchanges/%2F/api-events"
    assert api.status("PUT", path, {"type": "topic", "durable": False}) == 201
    assert api.status("PUT", path, {"type": "topic", "durable": False}) == 204
    assert api.status("PUT", path, {"type": "fanout", "durable": False}) == 400
    assert api.status("PUT", "/api/exchanges/%2F/amq.mine", {"type": "direct"}) == 403
    assert api.get(path) == {
        "name": "api-events",
        "vhost": "/",
        "type": "topic",
        "durable": False,
        "auto_delete": False,
        "internal": False,
        "arguments": {},
    }
    assert api.get("/api/exchanges/%2F/amq.default")["name"] == ""
    names = {e["name"] for e in api.get("/api/exchanges/%2F")}
    assert {"", "amq.direct", "amq.topic", "api-events"} <= names
    assert api.status("DELETE", "/api/exchanges/%2F/amq.topic") == 403
    assert api.status("DELETE", path) == 204
    assert api.status("GET", path) == 404


def test_users_and_permissions_created_used_and_deleted(api: Api) -> None:
    bob = Api(api.broker, ("bob", "bobpw"))
    assert bob.status("GET", "/api/whoami") == 401
    assert api.status("PUT", "/api/users/bob", {"password": "bobpw", "tags": ""}) == 201
    assert bob.get("/api/whoami") == {"name": "bob", "tags": []}
    assert {"name": "bob", "tags": []} in api.get("/api/users")
    assert bob.status("GET", "/api/queues/%2F") == 403
    perms = {"configure": "^bob-", "write": ".*", "read": ".*"}
    assert api.status("PUT", "/api/permissions/%2F/bob", perms) == 201
    assert api.status("PUT", "/api/permissions/%2F/bob", {**perms, "read": "x"}) == 204
    assert api.get("/api/permissions/%2F/bob") == {
        "user": "bob",
        "vhost": "/",
        **perms,
        "read": "x",
    }
    assert api.get("/api/users/bob/permissions")[0]["vhost"] == "/"
    assert bob.status("GET", "/api/queues/%2F") == 200
    assert api.status("PUT", "/api/permissions/%2F/bob", {**perms, "read": "("}) == 400
    assert api.status("PUT", "/api/users/bob", {"tags": ["administrator"]}) == 204
    assert bob.get("/api/whoami")["tags"] == ["administrator"]
    assert api.status("DELETE", "/api/permissions/%2F/bob") == 204
    assert api.status("GET", "/api/permissions/%2F/bob") == 404
    assert api.status("PUT", "/api/users/bob", {"password": "newpw"}) == 204
    assert bob.status("GET", "/api/whoami") == 401
    assert api.status("DELETE", "/api/users/bob") == 204
    assert api.status("DELETE", "/api/users/bob") == 404
    assert api.status("PUT", "/api/users/carol", {"tags": "x"}) == 400  # no password


def test_an_mqtt_connection_is_listed_and_closed(
    api: Api, api_broker: BrokerProcess, clients: Clients
) -> None:
    victim = clients.paho(api_broker, "api-victim", username=ALICE[0], password=ALICE[1])
    bystander = clients.paho(api_broker, "api-bystander")
    listed = [c for c in api.get("/api/connections") if c["client_id"] == "api-victim"]
    assert len(listed) == 1
    connection = listed[0]
    assert connection["protocol"] == "mqtt"
    assert connection["user"] == "alice" and connection["vhost"] == "/"
    assert connection["peer_host"] == "127.0.0.1" and connection["peer_port"]
    name = quote(connection["name"], safe="")
    assert api.get(f"/api/connections/{name}")["client_id"] == "api-victim"
    alice = Api(api_broker, ALICE)
    assert [c["client_id"] for c in alice.get("/api/connections")] == ["api-victim"]
    assert alice.status("DELETE", f"/api/connections/{name}") == 403
    assert api.status("DELETE", f"/api/connections/{name}") == 204
    assert victim.disconnected.wait(TIMEOUT), "paho did not see the close"
    assert not bystander.disconnected.is_set()
    assert api.status("DELETE", "/api/connections/no-such") == 404


def test_an_amqp_connection_is_closed_with_connection_forced(
    api: Api, api_broker: BrokerProcess
) -> None:
    pika_clients = PikaClients(api_broker)
    try:
        connection = pika_clients.connection(
            client_properties={"connection_name": "api-amqp-victim"}
        )
        listed = [c for c in api.get("/api/connections") if c["protocol"] == "amqp"]
        assert [(c["client_id"], c["user"]) for c in listed] == [("api-amqp-victim", "alice")]
        name = quote(listed[0]["name"], safe="")
        status, _, _ = api.request(
            "DELETE", f"/api/connections/{name}", headers={"X-Reason": "maintenance"}
        )
        assert status == 204
        with connection_closed(320):
            connection.process_data_events(time_limit=TIMEOUT)
    finally:
        pika_clients.close_all()


def test_an_xmpp_stream_is_closed_with_a_stream_error(broker_factory: BrokerFactory) -> None:
    config = xmpp_config()
    config["users"].append(ADMIN_USER)
    broker = broker_factory(config)
    api = Api(broker)
    pool = XmppClients(broker)
    try:
        client = pool.login("bob@localhost/api")
        errors = client.watch("stream_error")
        listed = [c for c in api.get("/api/connections") if c["protocol"] == "xmpp"]
        assert [(c["user"], c["client_id"]) for c in listed] == [("bob", "bob@localhost/api")]
        assert api.status("DELETE", "/api/connections/" + quote(listed[0]["name"], safe="")) == 204
        error = wait(errors, "stream error")
        assert error["condition"] == "policy-violation"
        wait(client.disconnected, "disconnect")
    finally:
        pool.close_all()


def test_publish_for_testing_reaches_a_paho_subscriber(
    api: Api, api_broker: BrokerProcess, clients: Clients
) -> None:
    subscriber = clients.paho(api_broker)
    assert subscriber.subscribe(("api/+/news", 1)) == [1]
    publish = "/api/exchanges/%2F/amq.topic/publish"
    body = {"routing_key": "api.a.news", "payload": "hello", "properties": {"delivery_mode": 2}}
    assert api.request("POST", publish, body)[1] == {"routed": True}
    message = subscriber.get()
    assert (message.topic, message.payload, message.qos) == ("api/a/news", b"hello", 1)
    binary = {
        "routing_key": "api.b.news",
        "payload": base64.b64encode(b"\x00\xff").decode(),
        "payload_encoding": "base64",
    }
    assert api.request("POST", publish, binary)[1] == {"routed": True}
    assert subscriber.get().payload == b"\x00\xff"
    assert api.status("POST", publish, {"routing_key": "private.x", "payload": "no"}) == 403
    assert api.status("POST", publish, {"payload": 1}) == 400
    assert api.status("POST", "/api/exchanges/%2F/missing/publish", {"payload": "x"}) == 404


def test_broker_status_prints_the_overview(api_broker: BrokerProcess, clients: Clients) -> None:
    clients.paho(api_broker, "status-client")
    url = f"http://{api_broker.host}:{api_broker.http_port}"
    result = subprocess.run(
        [sys.executable, "-m", "broker", "status", "--url", url, "--user", ADMIN[0]]
        + ["--password", ADMIN[1]],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert f"mqtt    {api_broker.host}:{api_broker.mqtt_port}" in result.stdout
    assert "connections: 1 (mqtt 1)" in result.stdout
    assert "queues: " in result.stdout


def test_broker_status_says_when_the_api_is_unreachable(api_broker: BrokerProcess) -> None:
    url = f"http://{api_broker.host}:{api_broker.mqtt_port}"  # not HTTP at all
    refused = subprocess.run(
        [sys.executable, "-m", "broker", "status", "--url", "http://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        cwd=REPO_ROOT,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0
    assert "management API unreachable" in refused.stderr
    wrong = subprocess.run(
        [sys.executable, "-m", "broker", "status", "--url", url, "--timeout", "3"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        cwd=REPO_ROOT,
    )
    assert wrong.returncode == 1 and wrong.stderr.startswith("broker: ")


def test_pika_sees_queues_declared_through_the_api(api: Api, api_broker: BrokerProcess) -> None:
    assert api.status("PUT", "/api/queues/%2F/api-shared", {"durable": False}) == 201
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(
            api_broker.host,
            api_broker.amqp_port,
            credentials=pika.PlainCredentials(*ALICE),
            connection_attempts=1,
        )
    )
    try:
        channel = connection.channel()
        channel.queue_declare("api-shared", passive=True)
        channel.basic_consume("api-shared", lambda *args: None)
        queue = api.get("/api/queues/%2F/api-shared")
        assert queue["consumers"] == 1
    finally:
        connection.close()
