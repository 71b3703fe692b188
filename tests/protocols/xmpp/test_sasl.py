"""SASL exchanges, sans-I/O: PLAIN and SCRAM driven by scramp's own client."""

from __future__ import annotations

import pytest
from scramp import ScramClient

from broker.auth import UserDB
from protocols.xmpp.sasl import Challenge, SaslExchange, SaslFailure, Success, mechanisms


def exchange(users: UserDB, mechanism: str, *, loopback: bool = True) -> SaslExchange:
    return SaslExchange(mechanism, users, "localhost", peer_loopback=loopback)


def scram_login(
    users: UserDB, mechanism: str, password: str, channel_binding: tuple | None = None
) -> tuple[Success, ScramClient]:
    client = ScramClient([mechanism], "alice", password, channel_binding=channel_binding)
    sasl = exchange(users, mechanism)
    first = sasl.start(client.get_client_first().encode())
    assert isinstance(first, Challenge)
    client.set_server_first(first.data.decode())
    result = sasl.respond(client.get_client_final().encode())
    assert isinstance(result, Success)
    return result, client


def test_plain_is_offered_only_when_allowed() -> None:
    assert "PLAIN" in mechanisms(plain_allowed=True)
    assert mechanisms(plain_allowed=False) == ("SCRAM-SHA-256", "SCRAM-SHA-1")


@pytest.mark.parametrize("authzid", [b"", b"alice", b"alice@localhost", b"Alice@LOCALHOST"])
def test_plain_with_the_right_password_succeeds(users: UserDB, authzid: bytes) -> None:
    result = exchange(users, "PLAIN").start(authzid + b"\0alice\0alicepw")
    assert result == Success("alice")


@pytest.mark.parametrize(
    ("initial", "condition"),
    [
        (b"\0alice\0wrong", "not-authorized"),
        (b"\0nobody\0alicepw", "not-authorized"),
        (b"\0\0", "not-authorized"),  # no authcid must not fall back to guest
        (b"bob@localhost\0alice\0alicepw", "invalid-authzid"),
        (b"alice\0alicepw", "malformed-request"),
        (b"\0alice\0alice\0pw", "malformed-request"),
        (b"\0al\xffice\0alicepw", "malformed-request"),
    ],
)
def test_plain_failures(users: UserDB, initial: bytes, condition: str) -> None:
    with pytest.raises(SaslFailure) as caught:
        exchange(users, "PLAIN").start(initial)
    assert caught.value.condition == condition


def test_guest_is_refused_off_loopback(users: UserDB) -> None:
    assert exchange(users, "PLAIN").start(b"\0guest\0guest") == Success("guest")
    with pytest.raises(SaslFailure) as caught:
        exchange(users, "PLAIN", loopback=False).start(b"\0guest\0guest")
    assert caught.value.condition == "not-authorized"


def test_no_initial_response_gets_an_empty_challenge(users: UserDB) -> None:
    sasl = exchange(users, "PLAIN")
    assert sasl.start(None) == Challenge(b"")
    assert sasl.respond(b"\0alice\0alicepw") == Success("alice")


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_full_exchange_verifies_the_server(users: UserDB, mechanism: str) -> None:
    result, client = scram_login(users, mechanism, "alicepw")
    assert result.username == "alice"
    client.set_server_final(result.data.decode())  # raises unless the server knew the keys


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_with_gs2_header_y_is_accepted(users: UserDB, mechanism: str) -> None:
    """'y,,': the client could bind a channel but thinks the server cannot (no -PLUS)."""
    client = ScramClient([mechanism], "alice", "alicepw", channel_binding=("tls-unique", b"x"))
    client_first = client.get_client_first()
    assert client_first.startswith("y,,")
    sasl = exchange(users, mechanism)
    first = sasl.start(client_first.encode())
    assert isinstance(first, Challenge)
    client.set_server_first(first.data.decode())
    result = sasl.respond(client.get_client_final().encode())
    assert isinstance(result, Success) and result.username == "alice"
    client.set_server_final(result.data.decode())


@pytest.mark.parametrize("user", ["alice", "nobody"])
def test_scram_with_a_wrong_password_or_user_is_not_authorized(users: UserDB, user: str) -> None:
    client = ScramClient(["SCRAM-SHA-256"], user, "wrong")
    sasl = exchange(users, "SCRAM-SHA-256")
    first = sasl.start(client.get_client_first().encode())
    assert isinstance(first, Challenge)
    client.set_server_first(first.data.decode())
    with pytest.raises(SaslFailure) as caught:
        sasl.respond(client.get_client_final().encode())
    assert caught.value.condition == "not-authorized"


@pytest.mark.parametrize(
    "initial", [b"garbage", b"p=tls-unique,,n=alice,r=abc", b"n,,", b"n,,n=alice,r=\xff"]
)
def test_malformed_scram_client_first_is_malformed_request(users: UserDB, initial: bytes) -> None:
    with pytest.raises(SaslFailure) as caught:
        exchange(users, "SCRAM-SHA-1").start(initial)
    assert caught.value.condition == "malformed-request"


def test_a_response_before_the_client_first_is_malformed(users: UserDB) -> None:
    with pytest.raises(SaslFailure) as caught:
        exchange(users, "SCRAM-SHA-1").respond(b"c=biws,r=x,p=y")
    assert caught.value.condition == "malformed-request"
