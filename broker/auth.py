"""Users, SCRAM credentials and RabbitMQ-style vhost permissions.

Passwords are never stored: each user keeps only SCRAM salted keys (SCRAM-SHA-256 and
SCRAM-SHA-1), so one record serves both PLAIN (derive with the stored salt, compare) and
SASL SCRAM (hand the keys to scramp).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from scramp import ScramException, ScramMechanism

from broker.config import UserConfig

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")
ITERATIONS = 4096
GUEST = "guest"
_PLAIN_MECHANISM = "SCRAM-SHA-256"
_VERIFIED_CACHE_SIZE = 1024
_PERMISSION_KINDS = ("configure", "write", "read")

AuthInfo = tuple[bytes, bytes, bytes, int]  # scramp's (salt, stored_key, server_key, i)


class AuthError(Exception):
    """Authentication refused; `reason` is "bad_credentials" or "not_authorized"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ScramCredential:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def auth_info(self) -> AuthInfo:
        return (self.salt, self.stored_key, self.server_key, self.iterations)


@dataclass(frozen=True, slots=True)
class Permission:
    """Regexes over resource names, searched unanchored as RabbitMQ's re:run does."""

    configure: str
    write: str
    read: str


@dataclass
class User:
    name: str
    credentials: dict[str, ScramCredential]
    tags: list[str] = field(default_factory=list)
    permissions: dict[str, Permission] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "credentials": {
                mech: {
                    "salt": c.salt,
                    "iterations": c.iterations,
                    "stored_key": c.stored_key,
                    "server_key": c.server_key,
                }
                for mech, c in self.credentials.items()
            },
            "tags": list(self.tags),
            "permissions": {
                vhost: {"configure": p.configure, "write": p.write, "read": p.read}
                for vhost, p in self.permissions.items()
            },
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> User:
        return cls(
            name=record["name"],
            credentials={mech: ScramCredential(**c) for mech, c in record["credentials"].items()},
            tags=list(record.get("tags", ())),
            permissions={
                vhost: Permission(**p) for vhost, p in record.get("permissions", {}).items()
            },
        )


def make_credentials(password: str) -> dict[str, ScramCredential]:
    """Salted keys for every supported mechanism; raises ValueError for an unusable password."""
    try:
        infos = {m: ScramMechanism(m).make_auth_info(password, ITERATIONS) for m in MECHANISMS}
    except ScramException as e:
        raise ValueError(f"password rejected by SASLprep: {e}") from e
    return {
        m: ScramCredential(salt, i, stored, server)
        for m, (salt, stored, server, i) in infos.items()
    }


def _stored_key_for(credential: ScramCredential, mechanism: str, password: str) -> bytes:
    _, stored_key, _, _ = ScramMechanism(mechanism).make_auth_info(
        password, credential.iterations, credential.salt
    )
    return stored_key


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    # RabbitMQ treats an empty permission as "^$" (matches nothing but "").
    return re.compile(pattern or "^$")


def _check_regex(pattern: str) -> None:
    try:
        _compiled(pattern)
    except re.error as e:
        raise ValueError(f"invalid permission regex {pattern!r}: {e}") from e


def has_vhost_access(user: User, vhost: str) -> bool:
    """As RabbitMQ: any permission entry on the vhost, even all "^$", grants access."""
    return vhost in user.permissions


def can(user: User, vhost: str, kind: str, resource: str) -> bool:
    """RabbitMQ's check: the kind's regex searched (unanchored) in the resource name.

    The default exchange "" is checked as "amq.default", as RabbitMQ does; server-named
    queues are checked under their generated names, so "" means only that exchange.
    """
    perm = user.permissions.get(vhost)
    if perm is None:
        return False
    if kind not in _PERMISSION_KINDS:
        raise ValueError(f"unknown permission kind {kind!r}")
    return _compiled(getattr(perm, kind)).search(resource or "amq.default") is not None


class UserDB:
    """The user database, authentication and the hooks that persist changes."""

    def __init__(self, *, allow_anonymous: bool = True, guest_loopback_only: bool = True) -> None:
        self.allow_anonymous = allow_anonymous
        self.guest_loopback_only = guest_loopback_only
        self.on_change: Callable[[str, dict | None], None] | None = None
        #: bumped on every change, so connections can cache permission verdicts
        self.version = 0
        self._users: dict[str, User] = {}
        # (user, salt, keyed hash of password) of recent successful PLAIN checks. The
        # salt changes with the password, so a password change invalidates entries.
        self._verified: OrderedDict[tuple[str, bytes, bytes], None] = OrderedDict()
        self._secret = secrets.token_bytes(32)

    # --- persistence -------------------------------------------------------------

    def load(self, records: dict[str, dict]) -> None:
        """Replace all users from store records (no on_change: they came from there)."""
        self._users = {name: User.from_record(r) for name, r in records.items()}
        self._verified.clear()
        self.version += 1

    def _changed(self, name: str) -> None:
        self.version += 1
        if self.on_change is not None:
            user = self._users.get(name)
            self.on_change(name, None if user is None else user.to_record())

    # --- changes -----------------------------------------------------------------

    def add(self, name: str, password: str, tags: Iterable[str] = ()) -> User:
        if not name:
            raise ValueError("user name must not be empty")
        if name in self._users:
            raise ValueError(f"user {name!r} already exists")
        user = User(name, make_credentials(password), list(tags))
        self._users[name] = user
        self._changed(name)
        return user

    def delete(self, name: str) -> None:
        del self._users[self._existing(name).name]
        self._changed(name)

    def set_password(self, name: str, password: str) -> None:
        self._existing(name).credentials = make_credentials(password)
        self._changed(name)

    def set_tags(self, name: str, tags: Iterable[str]) -> None:
        self._existing(name).tags = list(tags)
        self._changed(name)

    def set_permissions(self, name: str, vhost: str, configure: str, write: str, read: str) -> None:
        user = self._existing(name)
        for pattern in (configure, write, read):
            _check_regex(pattern)
        user.permissions[vhost] = Permission(configure, write, read)
        self._changed(name)

    def clear_permissions(self, name: str, vhost: str) -> None:
        self._existing(name).permissions.pop(vhost, None)
        self._changed(name)

    def ensure_default_users(self) -> None:
        """On a fresh (empty) database create guest/guest, administrator on "/"."""
        if self._users:
            return
        self.add(GUEST, GUEST, ["administrator"])
        self.set_permissions(GUEST, "/", ".*", ".*", ".*")

    def apply_config(self, users: Iterable[UserConfig]) -> None:
        """Make `[[users]]` true: create them, or update what differs from the config.

        Vhosts the config does not mention keep their (run-time) permissions.
        """
        for uc in users:
            user = self._users.get(uc.name)
            if user is None:
                self.add(uc.name, uc.password, uc.tags)
            else:
                if not self._password_matches(user, uc.password):
                    self.set_password(uc.name, uc.password)
                if user.tags != list(uc.tags):
                    self.set_tags(uc.name, uc.tags)
            current = self._users[uc.name].permissions
            for vhost, p in uc.permissions.items():
                if current.get(vhost) != Permission(p.configure, p.write, p.read):
                    self.set_permissions(uc.name, vhost, p.configure, p.write, p.read)

    # --- queries -----------------------------------------------------------------

    def get(self, name: str) -> User | None:
        return self._users.get(name)

    def _existing(self, name: str) -> User:
        user = self._users.get(name)
        if user is None:
            raise KeyError(f"no such user {name!r}")
        return user

    # --- authentication ----------------------------------------------------------

    def authenticate(
        self, username: str | None, password: bytes | str | None, *, peer_loopback: bool
    ) -> User:
        """Check username/password (MQTT, AMQP PLAIN, WebSocket); none at all means guest."""
        if not username:
            if not self.allow_anonymous:
                raise AuthError("not_authorized")
            return self.authorize(GUEST, peer_loopback=peer_loopback)
        user = self._users.get(username)
        if password is None or not self._password_matches(user, password):
            raise AuthError("bad_credentials")
        return self.authorize(username, peer_loopback=peer_loopback)

    def authorize(self, name: str, *, peer_loopback: bool) -> User:
        """Rules applied after the password proved: call it after a SASL SCRAM exchange too."""
        user = self._users.get(name)
        if user is None:
            raise AuthError("not_authorized")
        if name == GUEST and self.guest_loopback_only and not peer_loopback:
            raise AuthError("not_authorized")  # RabbitMQ's loopback_users
        return user

    def _password_matches(self, user: User | None, password: bytes | str) -> bool:
        try:
            text = password.decode() if isinstance(password, bytes) else password
        except UnicodeDecodeError:
            return False
        credential = None if user is None else user.credentials.get(_PLAIN_MECHANISM)
        if user is None or credential is None:
            # Spend the same PBKDF2 time, so timing does not reveal which users exist.
            credential = self._decoy(_PLAIN_MECHANISM, "" if user is None else user.name)
        key = (
            "" if user is None else user.name,
            credential.salt,
            hashlib.blake2b(text.encode(), key=self._secret, digest_size=16).digest(),
        )
        if user is not None and key in self._verified:
            self._verified.move_to_end(key)
            return True
        try:
            derived = _stored_key_for(credential, _PLAIN_MECHANISM, text)
        except ScramException:  # SASLprep-prohibited characters
            return False
        if user is None or not hmac.compare_digest(derived, credential.stored_key):
            return False
        self._verified[key] = None
        if len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return True

    def _decoy(self, mechanism: str, username: str) -> ScramCredential:
        """Stable fake keys for unknown users: no key derives from any password."""
        digest = hashlib.sha256 if "SHA-256" in mechanism else hashlib.sha1

        def part(label: bytes) -> bytes:
            return hmac.new(self._secret, label + username.encode(), digest).digest()

        return ScramCredential(part(b"salt")[:16], ITERATIONS, part(b"stored"), part(b"server"))

    def scram_lookup(self, mechanism: str) -> Callable[[str], AuthInfo]:
        """auth_fn for scramp.ScramMechanism(mechanism).make_server(auth_fn).

        Unknown users get decoy keys (RFC 5802 section 9) so the exchange fails at the
        proof, not earlier. After success call authorize() for the guest/loopback rules.
        """
        base = mechanism.removesuffix("-PLUS")
        if base not in MECHANISMS:
            raise ValueError(f"unsupported mechanism {mechanism!r}")

        def lookup(username: str) -> AuthInfo:
            user = self._users.get(username)
            credential = None if user is None else user.credentials.get(base)
            if credential is None:
                credential = self._decoy(base, username)
            return credential.auth_info()

        return lookup

    def list(self) -> list[User]:
        return sorted(self._users.values(), key=lambda u: u.name)
