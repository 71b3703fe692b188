"""SASL for XMPP (RFC 6120 section 6), sans-I/O: PLAIN and SCRAM-SHA-1/-256.

A ``SaslExchange`` takes the client's initial response and later responses and answers
with a challenge, success (with SCRAM's server-final as additional data) or a failure
condition.  scramp checks SCRAM proofs against the salted keys of the user database, and
accepts both GS2 headers clients send (``n,,`` and ``y,,``: no channel binding offered here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scramp import ScramException, ScramMechanism

from broker.auth import AuthError, AuthInfo, UserDB

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")


class SaslFailure(Exception):
    """The exchange failed; ``condition`` is the RFC 6120 6.5 failure element."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    username: str
    data: bytes = b""


def mechanisms(plain_allowed: bool) -> tuple[str, ...]:
    return SCRAM_MECHANISMS + (("PLAIN",) if plain_allowed else ())


class SaslExchange:
    """One authentication attempt with one mechanism."""

    def __init__(self, mechanism: str, users: UserDB, domain: str, peer_loopback: bool) -> None:
        self.mechanism = mechanism
        self._users = users
        self._domain = domain
        self._loopback = peer_loopback
        self._scram = None
        self._username: str | None = None
        self._waiting_for_initial = False
        if mechanism in SCRAM_MECHANISMS:
            lookup = users.scram_lookup(mechanism)
            self._scram = ScramMechanism(mechanism).make_server(self._remember(lookup))

    def _remember(self, lookup: Callable[[str], AuthInfo]) -> Callable[[str], AuthInfo]:
        def auth_info(username: str) -> AuthInfo:
            self._username = username
            return lookup(username)

        return auth_info

    def start(self, initial: bytes | None) -> Challenge | Success:
        """The ``<auth/>``: ``initial`` is None when the client sent no initial response
        (RFC 6120 6.4.2), which an empty challenge asks for."""
        if initial is None:
            self._waiting_for_initial = True
            return Challenge(b"")
        if self._scram is None:
            return self._plain(initial)
        try:
            self._scram.set_client_first(_text(initial))
            return Challenge(self._scram.get_server_first().encode())
        except ScramException as exc:
            raise SaslFailure("malformed-request", str(exc)) from None

    def respond(self, response: bytes) -> Challenge | Success:
        if self._waiting_for_initial:
            self._waiting_for_initial = False
            return self.start(response)
        if self._scram is None or self._username is None:
            raise SaslFailure("malformed-request", "unexpected response")
        try:
            self._scram.set_client_final(_text(response))
            final = self._scram.get_server_final().encode()
        except ScramException:
            raise SaslFailure("not-authorized") from None
        return Success(self._authorized(self._username), final)

    def _plain(self, initial: bytes) -> Success:
        parts = initial.split(b"\x00")
        if len(parts) != 3:
            raise SaslFailure("malformed-request", "PLAIN needs authzid, authcid and password")
        authzid, authcid, password = (_text(p) for p in parts)
        if not authcid:
            raise SaslFailure("not-authorized")
        if authzid and authzid.lower() not in (
            authcid.lower(),
            f"{authcid}@{self._domain}".lower(),
        ):
            raise SaslFailure("invalid-authzid")
        try:
            user = self._users.authenticate(authcid, password, peer_loopback=self._loopback)
        except AuthError:
            raise SaslFailure("not-authorized") from None
        return Success(user.name)

    def _authorized(self, username: str) -> str:
        try:
            return self._users.authorize(username, peer_loopback=self._loopback).name
        except AuthError:
            raise SaslFailure("not-authorized") from None


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise SaslFailure("malformed-request", "not UTF-8") from None
