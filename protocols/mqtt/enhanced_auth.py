"""MQTT 5 enhanced authentication (4.12) with SASL SCRAM, sans-I/O.

CONNECT (or AUTH 0x19 for re-authentication) carries the client-first message, the broker
answers AUTH 0x18 with the server-first, the client's AUTH 0x18 carries the client-final,
and the CONNACK (or AUTH 0x00) carries the server-final.  scramp does the SCRAM work against
the salted keys in the user database; unknown users fail at the proof, as known ones with
a wrong password do.
"""

from __future__ import annotations

from collections.abc import Callable

from scramp import ScramException, ScramMechanism

from broker.auth import AuthInfo

METHODS = ("SCRAM-SHA-256", "SCRAM-SHA-1")


class AuthFailed(Exception):
    pass


class ScramExchange:
    def __init__(self, method: str, lookup: Callable[[str], AuthInfo]) -> None:
        self.method = method
        self.username: str | None = None
        self._lookup = lookup
        self._server = ScramMechanism(method).make_server(self._auth_info)

    def _auth_info(self, username: str) -> AuthInfo:
        self.username = username
        return self._lookup(username)

    def first(self, client_first: bytes) -> bytes:
        """The server-first message for the client-first one."""
        try:
            self._server.set_client_first(client_first.decode())
            return self._server.get_server_first().encode()
        except (ScramException, UnicodeDecodeError) as exc:
            raise AuthFailed(str(exc)) from None

    def final(self, client_final: bytes) -> bytes:
        """The server-final message once the client's proof checks out."""
        try:
            self._server.set_client_final(client_final.decode())
            return self._server.get_server_final().encode()
        except (ScramException, UnicodeDecodeError) as exc:
            raise AuthFailed(str(exc)) from None
