"""Stream negotiation, sans-I/O: an ``XMPPConnection`` driven with bytes, a real user
database, and a small session handler that records what reaches it."""

from __future__ import annotations

import base64
import re

import pytest
from lxml import etree
from scramp import ScramClient

from broker.auth import UserDB
from protocols.xmpp.connection import MAX_AUTH_FAILURES, StreamSettings, XMPPConnection
from protocols.xmpp.stream import StreamError

HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    b"to='localhost' version='1.0'>"
)
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"


class Handler:
    """The session side: offers a bind feature and records elements and losses."""

    def __init__(self) -> None:
        self.elements: list[etree._Element] = []
        self.lost_count = 0

    def features(self, conn: XMPPConnection) -> str:
        return "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"

    def element(self, conn: XMPPConnection, el: etree._Element) -> None:
        self.elements.append(el)

    def lost(self, conn: XMPPConnection) -> None:
        self.lost_count += 1

    def pre_auth_features(self, conn: XMPPConnection) -> str:
        return ""

    def pre_auth_iq(self, conn: XMPPConnection, iq: etree._Element) -> None:
        raise StreamError("not-authorized", "no registration here")


class Client:
    """One connection and what it wrote, taken out read by read."""

    def __init__(self, users: UserDB, *, loopback: bool = True, secure: bool = False) -> None:
        self.handler = Handler()
        self.conn = XMPPConnection(
            StreamSettings("localhost", max_stanza_size=4096, max_depth=10),
            users,
            self.handler,
            peer="192.0.2.1:5000",
            peer_loopback=loopback,
            tls_available=True,
            secure=secure,
        )

    def send(self, data: bytes | str) -> bytes:
        self.conn.receive(data.encode() if isinstance(data, str) else data)
        out = bytes(self.conn.outbox)
        self.conn.outbox.clear()
        return out

    def auth(self, mechanism: str, initial: bytes | None) -> bytes:
        text = "" if initial is None else base64.b64encode(initial).decode() or "="
        return self.send(f"<auth xmlns='{SASL}' mechanism='{mechanism}'>{text}</auth>")

    def response(self, data: bytes) -> bytes:
        return self.send(f"<response xmlns='{SASL}'>{base64.b64encode(data).decode()}</response>")


def stream_error(condition: str) -> bytes:
    return f"<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>".encode()


def sasl_failure(condition: str) -> bytes:
    return f"<failure xmlns='{SASL}'><{condition}/></failure>".encode()


def mechanisms_offered(out: bytes) -> list[str]:
    return re.findall(r"<mechanism>([^<]+)</mechanism>", out.decode())


def closed_with(client: Client, out: bytes, condition: str) -> bool:
    return (
        stream_error(condition) in out
        and out.endswith(b"</stream:stream>")
        and (client.conn.closing and client.handler.lost_count >= 1)
    )


def test_loopback_plain_stream_offers_starttls_and_every_mechanism(users: UserDB) -> None:
    out = Client(users).send(HEADER)
    assert b"<stream:stream " in out and b"from='localhost'" in out
    assert f"<starttls xmlns='{TLS}'></starttls>".encode() in out
    assert mechanisms_offered(out) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


def test_off_loopback_starttls_is_required_and_nothing_else_offered(users: UserDB) -> None:
    out = Client(users, loopback=False).send(HEADER)
    assert f"<starttls xmlns='{TLS}'><required/></starttls>".encode() in out
    assert mechanisms_offered(out) == []


def test_off_loopback_sasl_before_tls_is_encryption_required(users: UserDB) -> None:
    client = Client(users, loopback=False)
    client.send(HEADER)
    assert client.auth("PLAIN", b"\0alice\0alicepw") == sasl_failure("encryption-required")
    assert client.conn.username is None


def test_starttls_then_plain_is_offered_off_loopback(users: UserDB) -> None:
    client = Client(users, loopback=False)
    client.send(HEADER)
    out = client.send(f"<starttls xmlns='{TLS}'/><auth xmlns='{SASL}' mechanism='PLAIN'>x</auth>")
    assert out == f"<proceed xmlns='{TLS}'/>".encode()
    assert client.conn.tls_requested
    client.conn.tls_established()
    out = client.send(HEADER)
    assert b"starttls" not in out
    assert mechanisms_offered(out) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
    assert client.auth("PLAIN", b"\0alice\0alicepw").startswith(b"<success")


def test_direct_tls_offers_plain_without_starttls(users: UserDB) -> None:
    out = Client(users, loopback=False, secure=True).send(HEADER)
    assert b"starttls" not in out
    assert "PLAIN" in mechanisms_offered(out)


def test_starttls_on_a_secure_stream_fails_and_closes(users: UserDB) -> None:
    client = Client(users, secure=True)
    client.send(HEADER)
    out = client.send(f"<starttls xmlns='{TLS}'/>")
    assert out == f"<failure xmlns='{TLS}'/></stream:stream>".encode()
    assert client.conn.closing


def test_plain_success_restarts_the_stream_into_the_session(users: UserDB) -> None:
    client = Client(users)
    client.send(HEADER)
    out = client.auth("PLAIN", b"\0alice\0alicepw")
    assert out == f"<success xmlns='{SASL}'></success>".encode()
    assert client.conn.username == "alice"
    out = client.send(HEADER)
    assert b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in out
    client.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert [el.get("id") for el in client.handler.elements] == ["b1"]


def test_what_follows_success_in_the_same_read_is_not_the_new_stream(users: UserDB) -> None:
    client = Client(users)
    client.send(HEADER)
    pipelined = base64.b64encode(b"\0alice\0alicepw").decode()
    client.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{pipelined}</auth><iq id='early'/>")
    assert client.handler.elements == []
    client.send(HEADER + b"<iq id='late'/>")
    assert [el.get("id") for el in client.handler.elements] == ["late"]


def test_no_initial_response_gets_an_empty_challenge(users: UserDB) -> None:
    client = Client(users)
    client.send(HEADER)
    assert client.auth("PLAIN", None) == f"<challenge xmlns='{SASL}'></challenge>".encode()
    assert client.response(b"\0alice\0alicepw").startswith(b"<success")


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
@pytest.mark.parametrize("gs2", ["n,,", "y,,"])
def test_scram_exchange_over_the_stream(users: UserDB, mechanism: str, gs2: str) -> None:
    binding = ("tls-unique", b"x") if gs2 == "y,," else None
    scram = ScramClient([mechanism], "alice", "alicepw", channel_binding=binding)
    client = Client(users)
    client.send(HEADER)
    client_first = scram.get_client_first()
    assert client_first.startswith(gs2)
    out = client.auth(mechanism, client_first.encode())
    challenge = re.fullmatch(rb"<challenge xmlns='[^']+'>([^<]+)</challenge>", out)
    assert challenge is not None
    scram.set_server_first(base64.b64decode(challenge.group(1)).decode())
    out = client.response(scram.get_client_final().encode())
    success = re.fullmatch(rb"<success xmlns='[^']+'>([^<]+)</success>", out)
    assert success is not None
    scram.set_server_final(base64.b64decode(success.group(1)).decode())
    assert client.conn.username == "alice"


@pytest.mark.parametrize(
    ("auth", "condition"),
    [
        (f"<auth xmlns='{SASL}' mechanism='PLAIN'>!!not base64!!</auth>", "incorrect-encoding"),
        (f"<auth xmlns='{SASL}' mechanism='DIGEST-MD5'>=</auth>", "invalid-mechanism"),
        (f"<auth xmlns='{SASL}' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>", "not-authorized"),
        (f"<abort xmlns='{SASL}'/>", "aborted"),
        (f"<response xmlns='{SASL}'>=</response>", "malformed-request"),
    ],
    ids=["bad-base64", "unknown-mechanism", "wrong-password", "abort", "stray-response"],
)
def test_sasl_failure_conditions(users: UserDB, auth: str, condition: str) -> None:
    client = Client(users)
    client.send(HEADER)
    assert client.send(auth) == sasl_failure(condition)
    assert not client.conn.closing
    assert client.conn.username is None


def test_abort_in_the_middle_of_scram(users: UserDB) -> None:
    client = Client(users)
    client.send(HEADER)
    client.auth(
        "SCRAM-SHA-1", ScramClient(["SCRAM-SHA-1"], "alice", "x").get_client_first().encode()
    )
    assert client.send(f"<abort xmlns='{SASL}'/>") == sasl_failure("aborted")
    assert client.auth("PLAIN", b"\0alice\0alicepw").startswith(b"<success")


def test_repeated_failures_close_the_stream_with_policy_violation(users: UserDB) -> None:
    client = Client(users)
    client.send(HEADER)
    for _ in range(MAX_AUTH_FAILURES - 1):
        assert client.auth("PLAIN", b"\0alice\0wrong") == sasl_failure("not-authorized")
    out = client.auth("PLAIN", b"\0alice\0wrong")
    assert out.startswith(sasl_failure("not-authorized"))
    assert closed_with(client, out, "policy-violation")


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (HEADER + b"<message to='bob@localhost'/>", "not-authorized"),
        (HEADER.replace(b"to='localhost'", b"to='example.org'"), "host-unknown"),
        (HEADER.replace(b"version='1.0'", b"version='0.9'"), "unsupported-version"),
        (HEADER.replace(b"jabber:client", b"jabber:server"), "invalid-namespace"),
        (HEADER + b"<a></b>", "not-well-formed"),
        (b"<!DOCTYPE x [<!ENTITY a 'b'>]>" + HEADER, "restricted-xml"),
        (HEADER + b"<message>" + b"x" * 6000, "policy-violation"),
        (HEADER + b"<a>" * 20, "policy-violation"),
    ],
    ids=[
        "stanza-before-auth",
        "wrong-to",
        "old-version",
        "wrong-namespace",
        "not-well-formed",
        "dtd",
        "too-large",
        "too-deep",
    ],
)
def test_bad_streams_end_with_the_stream_error(users: UserDB, data: bytes, condition: str) -> None:
    client = Client(users)
    out = client.send(data)
    assert out.startswith(b"<?xml version='1.0'?><stream:stream ")
    assert closed_with(client, out, condition)
    assert client.send(b"<more/>") == b""
