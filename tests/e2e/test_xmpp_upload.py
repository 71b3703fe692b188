"""HTTP file upload (XEP-0363) with slixmpp: the service found through disco, slots
requested over XMPP, the PUT and GET on the broker's HTTP listener, the size limit and the
quota, expiry, a crash, and a file shared as a link in a chat message.

slixmpp's own uploader needs aiohttp, which the tests do not install: slots are requested
with slixmpp iqs and the HTTP side is done with the standard library, against the URLs
the slots give.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET

from .brokers import BrokerFactory, BrokerProcess, free_port, merge
from .xmpp import TIMEOUT, XmppClient, XmppClients, xmpp_config

NS_UPLOAD = "urn:xmpp:http:upload:0"
NS_DATA = "jabber:x:data"
NS_OOB = "jabber:x:oob"
SERVICE = "upload.localhost"
PLUGINS = ("xep_0030", "xep_0199")


@dataclass(frozen=True)
class Slot:
    put: str
    headers: dict[str, str]
    get: str


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.hostname and parts.port
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        conn.request(method, parts.path, body=body, headers=headers or {})
        response = conn.getresponse()
        head = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, head, response.read())
    finally:
        conn.close()


def upload_broker(factory: BrokerFactory, **settings: Any) -> BrokerProcess:
    """A broker with the XMPP test users and upload ``settings`` in [xmpp]."""
    return factory(merge(xmpp_config(), {"xmpp": {f"upload_{k}": v for k, v in settings.items()}}))


def request_slot(
    client: XmppClient, filename: str | None, size: int | str | None, content_type: str | None
) -> Slot:
    iq = client.run(client.client.make_iq_get, ito=SERVICE)
    request = ET.Element(f"{{{NS_UPLOAD}}}request")
    for name, value in (("filename", filename), ("size", size), ("content-type", content_type)):
        if value is not None:
            request.set(name, str(value))
    iq.append(request)
    slot = client.iq(iq).xml.find(f"{{{NS_UPLOAD}}}slot")
    put = slot.find(f"{{{NS_UPLOAD}}}put")
    headers = {h.get("name"): h.text for h in put.iterfind(f"{{{NS_UPLOAD}}}header")}
    return Slot(put.get("url"), headers, slot.find(f"{{{NS_UPLOAD}}}get").get("url"))


def put(slot: Slot, data: bytes, content_type: str | None = "text/plain") -> Reply:
    headers = dict(slot.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return fetch("PUT", slot.put, data, headers)


def upload(
    client: XmppClient, filename: str, data: bytes, content_type: str = "text/plain"
) -> Slot:
    slot = request_slot(client, filename, len(data), content_type)
    assert put(slot, data, content_type).status == 201
    return slot


def refusal(client: XmppClient, filename: str | None, size: int | str | None) -> Any:
    with pytest.raises(IqError) as refused:
        request_slot(client, filename, size, None)
    return refused.value.iq


# --- discovery ---------------------------------------------------------------------------


def test_the_service_is_found_through_disco_with_its_max_file_size(
    broker_factory: BrokerFactory,
) -> None:
    xmpp = XmppClients(upload_broker(broker_factory, max_file_size=5000))
    try:
        alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
        disco = alice.client.plugin["xep_0030"]
        items = alice.call(disco.get_items, jid="localhost")["disco_items"]["items"]
        assert (SERVICE, None, "HTTP File Upload") in items
        info = alice.call(disco.get_info, jid=SERVICE)
        assert ("store", "file", None, "HTTP File Upload") in info["disco_info"]["identities"]
        assert NS_UPLOAD in info["disco_info"]["features"]
        form = info.xml.find(f".//{{{NS_DATA}}}x")
        values = {
            field.get("var"): field.findtext(f"{{{NS_DATA}}}value")
            for field in form.iterfind(f"{{{NS_DATA}}}field")
        }
        assert values == {"FORM_TYPE": NS_UPLOAD, "max-file-size": "5000"}
    finally:
        xmpp.close_all()


def test_without_an_http_listener_there_is_no_upload_service(
    broker_factory: BrokerFactory,
) -> None:
    broker = broker_factory(merge(xmpp_config(), {"listeners": {"http": False}}))
    xmpp = XmppClients(broker)
    try:
        alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
        disco = alice.client.plugin["xep_0030"]
        items = alice.call(disco.get_items, jid="localhost")["disco_items"]["items"]
        assert all(item[0] != SERVICE for item in items)
        with pytest.raises(IqError):
            request_slot(alice, "a.txt", 1, None)
    finally:
        xmpp.close_all()


# --- slots, PUT and GET ------------------------------------------------------------------


def test_slot_put_and_get_round_trip(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
    data = b"hello, file upload\n"
    slot = request_slot(alice, "hello world.txt", len(data), "text/plain")
    assert slot.put == slot.get and slot.get.endswith("/hello%20world.txt")
    assert set(slot.headers) == {"Authorization"}
    assert fetch("GET", slot.get).status == 404  # nothing there before the PUT
    assert fetch("HEAD", slot.get).status == 404
    assert put(slot, data).status == 201
    fetched = fetch("GET", slot.get)
    assert (fetched.status, fetched.body) == (200, data)
    assert fetched.headers["content-type"] == "text/plain"
    head = fetch("HEAD", slot.get)
    assert (head.status, head.headers["content-length"], head.body) == (200, str(len(data)), b"")
    assert put(slot, data).status == 409  # a slot is filled once


def test_slot_urls_are_unguessable_and_need_the_put_header(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
    first = request_slot(alice, "same.txt", 3, "text/plain")
    second = request_slot(alice, "same.txt", 3, "text/plain")
    assert first.get != second.get
    token = urlsplit(first.get).path.split("/")[2]
    assert len(token) >= 32
    assert fetch("PUT", first.put, b"abc", {"Content-Type": "text/plain"}).status == 403
    big = request_slot(alice, "big.bin", 5_000_000, None)
    assert fetch("PUT", big.put, b"x" * 5_000_000).status == 403  # refused before the body
    wrong = {"Authorization": second.headers["Authorization"], "Content-Type": "text/plain"}
    assert fetch("PUT", first.put, b"abc", wrong).status == 403
    assert put(first, b"abc").status == 201


def test_a_file_shared_as_a_link_is_fetched_by_its_recipient(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
    bob = xmpp.login("bob@localhost/phone", plugins=PLUGINS)
    picture = bytes(range(256)) * 40
    slot = upload(alice, "cat.png", picture, "image/png")
    message = alice.run(alice.client.make_message, mto="bob@localhost", mbody=slot.get)
    oob = ET.SubElement(message.xml, f"{{{NS_OOB}}}x")
    ET.SubElement(oob, f"{{{NS_OOB}}}url").text = slot.get
    alice.run(message.send)
    received = bob.next_message()
    url = received.xml.findtext(f"{{{NS_OOB}}}x/{{{NS_OOB}}}url")
    assert url == received["body"] == slot.get
    fetched = fetch("GET", url)
    assert (fetched.status, fetched.headers["content-type"]) == (200, "image/png")
    assert fetched.body == picture
    assert fetched.headers["content-disposition"].startswith("inline")


def test_a_file_bigger_than_the_core_body_limit_uploads(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
    data = bytes(range(256)) * (8 * 1024)  # 2 MiB, over the HTTP core's 1 MiB
    slot = upload(alice, "big.bin", data, "application/octet-stream")
    assert fetch("GET", slot.get).body == data
    base = slot.get.split("/upload/")[0]
    assert fetch("POST", f"{base}/healthz", data).status == 413  # elsewhere the limit holds


def test_a_client_waiting_for_100_continue_gets_it(xmpp: XmppClients) -> None:
    """As curl does for large bodies: headers first, the body only after the 100."""
    alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
    data = b"y" * 100_000
    slot = request_slot(alice, "expect.bin", len(data), "application/octet-stream")
    url = urlsplit(slot.put)
    head = (
        f"PUT {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: {slot.headers['Authorization']}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n"
        "Expect: 100-continue\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), TIMEOUT) as sock:
        sock.sendall(head.encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 ")
        sock.sendall(data)
        assert sock.recv(1024).startswith(b"HTTP/1.1 201 ")
    assert fetch("GET", slot.get).body == data


# --- limits and bad input ------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_at_the_slot(broker_factory: BrokerFactory) -> None:
    xmpp = XmppClients(upload_broker(broker_factory, max_file_size=1000))
    try:
        alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
        error = refusal(alice, "big.bin", 1001)["error"]
        assert (error["type"], error["condition"]) == ("modify", "not-acceptable")
        too_large = error.xml.find(f"{{{NS_UPLOAD}}}file-too-large")
        assert too_large.findtext(f"{{{NS_UPLOAD}}}max-file-size") == "1000"
        request_slot(alice, "fits.bin", 1000, None)
    finally:
        xmpp.close_all()


def test_the_quota_is_enforced_per_user(broker_factory: BrokerFactory) -> None:
    xmpp = XmppClients(upload_broker(broker_factory, max_file_size=1000, quota=1500))
    try:
        alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
        upload(alice, "first.txt", b"x" * 1000)
        error = refusal(alice, "second.txt", 600)["error"]
        assert (error["type"], error["condition"]) == ("wait", "resource-constraint")
        assert error.xml.find(f"{{{NS_UPLOAD}}}retry").get("stamp").endswith("Z")
        request_slot(alice, "third.txt", 500, None)
        bob = xmpp.login("bob@localhost/phone", plugins=PLUGINS)
        request_slot(bob, "bobs.txt", 1000, None)
    finally:
        xmpp.close_all()


def test_a_put_of_another_size_than_announced_is_refused(broker_factory: BrokerFactory) -> None:
    xmpp = XmppClients(upload_broker(broker_factory, max_file_size=1000))
    try:
        alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
        slot = request_slot(alice, "ten.txt", 10, "text/plain")
        assert put(slot, b"x" * 20).status == 413
        assert put(slot, b"x" * 5).status == 400
        assert put(slot, b"x" * 2000).status == 413  # over the route's limit: not read
        assert put(slot, b"x" * 10, "image/png").status == 415
        assert fetch("GET", slot.get).status == 404
        assert put(slot, b"x" * 10).status == 201
    finally:
        xmpp.close_all()


@pytest.mark.parametrize(
    ("filename", "size"),
    [(None, 10), ("", 10), ("..", 10), ("a.txt", None), ("a.txt", -1), ("a.txt", "ten")],
)
def test_malformed_slot_requests_are_bad_requests(
    xmpp: XmppClients, filename: str | None, size: int | str | None
) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
    error = refusal(alice, filename, size)["error"]
    assert (error["type"], error["condition"]) == ("modify", "bad-request")


def test_a_file_name_never_leaves_the_upload_directory(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
    slot = upload(alice, "../../../../broker.toml", b"not a config")
    assert slot.get.endswith("/broker.toml")
    uploads = xmpp.broker.data_dir / "uploads"
    token = urlsplit(slot.get).path.split("/")[2]
    assert (uploads / token / "broker.toml").read_bytes() == b"not a config"
    assert (xmpp.broker.workdir / "broker.toml").read_bytes() != b"not a config"
    base = slot.get.split("/upload/")[0]
    for path in (f"{token}/..%2F..%2F..%2Fbroker.toml", f"{token}/%2e%2e", "..%2F..%2Fbroker.toml"):
        assert fetch("GET", f"{base}/upload/{path}").status == 404


# --- expiry and durability -----------------------------------------------------------------


def test_files_expire(broker_factory: BrokerFactory) -> None:
    broker = upload_broker(broker_factory, expire_after=1)
    xmpp = XmppClients(broker)
    try:
        alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
        slot = upload(alice, "short-lived.txt", b"soon gone")
        token = urlsplit(slot.get).path.split("/")[2]
        broker.wait_logged("xmpp upload expired", 1)
        assert fetch("GET", slot.get).status == 404
        assert not (broker.data_dir / "uploads" / token).exists()
    finally:
        xmpp.close_all()


def test_an_uploaded_file_survives_a_crash(broker_factory: BrokerFactory) -> None:
    config = merge(xmpp_config(), {"listeners": {"http": f"127.0.0.1:{free_port()}"}})
    broker = broker_factory(config)
    xmpp = XmppClients(broker)
    try:
        alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
        data = b"kept through kill -9\n" * 100
        slot = upload(alice, "durable.txt", data)
        other = request_slot(alice, "never-put.txt", 3, None)
        alice.close()
        broker.kill()
        broker.start()
        fetched = fetch("GET", slot.get)
        assert (fetched.status, fetched.body, fetched.headers["content-type"]) == (
            200,
            data,
            "text/plain",
        )
        assert put(other, b"abc", None).status == 404  # open slots do not outlive the broker
        uploads = sorted(p.name for p in Path(broker.data_dir, "uploads").iterdir())
        assert urlsplit(slot.get).path.split("/")[2] in uploads
    finally:
        xmpp.close_all()


def test_what_the_service_does_not_do_is_refused(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=PLUGINS)
    iq = alice.run(alice.client.make_iq_set, ito=SERVICE)
    iq.append(ET.Element(f"{{{NS_UPLOAD}}}request", filename="a.txt", size="1"))
    with pytest.raises(IqError) as refused:
        alice.iq(iq)
    assert refused.value.iq["error"]["condition"] == "service-unavailable"
    iq = alice.run(alice.client.make_iq_get, ito=f"someone@{SERVICE}")
    iq.append(ET.Element(f"{{{NS_UPLOAD}}}request", filename="a.txt", size="1"))
    with pytest.raises(IqError) as refused:
        alice.iq(iq)
    assert refused.value.iq["error"]["condition"] == "service-unavailable"
    alice.send_message(SERVICE, "hello?")
    bounced = alice.next_message()
    assert (bounced["type"], bounced["error"]["condition"]) == ("error", "service-unavailable")
