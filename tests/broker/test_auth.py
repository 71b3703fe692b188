import msgpack
import pytest
from scramp import ScramClient, ScramException, ScramMechanism

import broker.auth
from broker.auth import (
    MECHANISMS,
    AuthError,
    Permission,
    User,
    UserDB,
    can,
    has_vhost_access,
)
from broker.config import PermissionConfig, UserConfig


@pytest.fixture
def db() -> UserDB:
    db = UserDB()
    db.add("alice", "secret", ["management"])
    db.set_permissions("alice", "/", ".*", ".*", ".*")
    return db


def scram_exchange(db: UserDB, mechanism: str, username: str, password: str) -> None:
    """Full SCRAM conversation between scramp's client and our server lookup."""
    server = ScramMechanism(mechanism).make_server(db.scram_lookup(mechanism))
    client = ScramClient([mechanism], username, password)
    server.set_client_first(client.get_client_first())
    client.set_server_first(server.get_server_first())
    server.set_client_final(client.get_client_final())
    client.set_server_final(server.get_server_final())


def test_record_holds_only_salted_keys(db):
    record = db.get("alice").to_record()
    packed = msgpack.packb(record)
    assert b"secret" not in packed
    assert set(record["credentials"]) == set(MECHANISMS)
    for cred in record["credentials"].values():
        assert cred["iterations"] == 4096
        assert set(cred) == {"salt", "iterations", "stored_key", "server_key"}
    restored = User.from_record(msgpack.unpackb(packed))
    assert restored == db.get("alice")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_scram_round_trip(db, mechanism):
    scram_exchange(db, mechanism, "alice", "secret")
    assert db.authorize("alice", peer_loopback=False).name == "alice"


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_scram_wrong_password_and_unknown_user_fail_at_proof(db, mechanism):
    for username, password in (("alice", "wrong"), ("mallory", "secret")):
        with pytest.raises(ScramException, match="invalid-proof"):
            scram_exchange(db, mechanism, username, password)


def test_scram_unknown_user_gets_stable_decoy(db):
    lookup = db.scram_lookup("SCRAM-SHA-256")
    assert lookup("mallory") == lookup("mallory")
    assert lookup("mallory") != lookup("eve")
    with pytest.raises(ValueError):
        db.scram_lookup("SCRAM-MD5")


def test_plain_password(db):
    assert db.authenticate("alice", "secret", peer_loopback=False).name == "alice"
    assert db.authenticate("alice", b"secret", peer_loopback=False).name == "alice"
    for username, password in (
        ("alice", "wrong"),
        ("alice", b"\xff\xfe"),
        ("alice", None),
        ("nobody", "secret"),
    ):
        with pytest.raises(AuthError) as e:
            db.authenticate(username, password, peer_loopback=True)
        assert e.value.reason == "bad_credentials"


def test_verified_cache_invalidated_by_password_change(db, monkeypatch):
    db.authenticate("alice", "secret", peer_loopback=True)
    calls = []
    real = broker.auth._stored_key_for
    monkeypatch.setattr(broker.auth, "_stored_key_for", lambda *a: calls.append(1) or real(*a))
    db.authenticate("alice", "secret", peer_loopback=True)
    assert calls == []  # served from the cache, no PBKDF2
    db.set_password("alice", "new")
    with pytest.raises(AuthError):
        db.authenticate("alice", "secret", peer_loopback=True)
    assert db.authenticate("alice", "new", peer_loopback=True)
    assert len(calls) == 2


def test_guest_loopback_only():
    db = UserDB()
    db.ensure_default_users()
    assert db.authenticate("guest", "guest", peer_loopback=True).tags == ["administrator"]
    assert db.authenticate(None, None, peer_loopback=True).name == "guest"
    for username, password in (("guest", "guest"), (None, None)):
        with pytest.raises(AuthError) as e:
            db.authenticate(username, password, peer_loopback=False)
        assert e.value.reason == "not_authorized"
    open_db = UserDB(guest_loopback_only=False)
    open_db.ensure_default_users()
    assert open_db.authenticate("guest", "guest", peer_loopback=False).name == "guest"


def test_anonymous_disabled_or_guest_deleted():
    db = UserDB(allow_anonymous=False)
    db.ensure_default_users()
    with pytest.raises(AuthError, match="not_authorized"):
        db.authenticate(None, None, peer_loopback=True)
    assert db.authenticate("guest", "guest", peer_loopback=True)
    db = UserDB()
    db.ensure_default_users()
    db.delete("guest")
    with pytest.raises(AuthError, match="not_authorized"):
        db.authenticate("", None, peer_loopback=True)


def test_default_users_only_on_empty_db(db):
    db.ensure_default_users()
    assert [u.name for u in db.list()] == ["alice"]
    fresh = UserDB()
    fresh.ensure_default_users()
    guest = fresh.get("guest")
    assert guest.permissions == {"/": Permission(".*", ".*", ".*")}


def test_on_change_and_load(db):
    changes = []
    db.on_change = lambda name, record: changes.append((name, record))
    db.add("bob", "pw")
    db.set_permissions("bob", "v1", "^$", "^bob-", ".*")
    db.clear_permissions("bob", "v1")
    db.delete("bob")
    assert [(n, r is None) for n, r in changes] == [("bob", False)] * 3 + [("bob", True)]
    assert changes[1][1]["permissions"] == {
        "v1": {"configure": "^$", "write": "^bob-", "read": ".*"}
    }
    copy = UserDB()
    copy.load({"bob": changes[0][1]})
    assert copy.authenticate("bob", "pw", peer_loopback=False).name == "bob"


def test_mutation_errors(db):
    with pytest.raises(ValueError):
        db.add("alice", "x")
    with pytest.raises(ValueError):
        db.add("", "x")
    with pytest.raises(KeyError):
        db.set_password("nobody", "x")
    with pytest.raises(KeyError):
        db.delete("nobody")
    with pytest.raises(ValueError):
        db.set_permissions("alice", "/", "(", ".*", ".*")
    with pytest.raises(ValueError):
        db.add("carol", "bad\u0007password")  # SASLprep forbids control characters


def test_apply_config_creates_and_updates(db):
    changes = []
    db.on_change = lambda name, record: changes.append(name)
    full = PermissionConfig(".*", ".*", ".*")
    users = [
        UserConfig("alice", "secret", ["management"], {"/": full}),
        UserConfig("dave", "pw", [], {"iot": PermissionConfig("^$", "^d", "^d")}),
    ]
    db.apply_config(users)
    assert changes == ["dave", "dave"]  # alice already matched the config
    assert can(db.get("dave"), "iot", "write", "dev")
    db.set_permissions("alice", "other", ".*", ".*", ".*")
    db.apply_config([UserConfig("alice", "changed", ["administrator"], {"/": full})])
    alice = db.authenticate("alice", "changed", peer_loopback=False)
    assert alice.tags == ["administrator"]
    assert has_vhost_access(alice, "other")  # run-time permissions elsewhere survive


def test_permissions_follow_rabbitmq():
    user = User("u", {}, [], {"/": Permission("^$", "^amq\\.topic$|^logs-", "")})
    assert not can(user, "/", "configure", "anything")
    assert can(user, "/", "write", "amq.topic")
    assert can(user, "/", "write", "logs-1")
    assert not can(user, "/", "write", "my-logs-1")
    assert not can(user, "/", "read", "q")  # "" means "^$"
    assert not can(user, "other", "read", "q")  # no entry on the vhost at all
    assert has_vhost_access(user, "/") and not has_vhost_access(user, "other")
    # unanchored search, as RabbitMQ's re:run
    partial = User("p", {}, [], {"/": Permission("gen", "gen", "gen")})
    assert can(partial, "/", "read", "amq.gen-xyz")
    # the default exchange is checked as amq.default
    default_ok = User("d", {}, [], {"/": Permission("", "^amq\\.default$", "")})
    assert can(default_ok, "/", "write", "")
    with pytest.raises(ValueError):
        can(user, "/", "delete", "q")
