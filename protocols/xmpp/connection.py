"""One client-to-server stream, sans-I/O: stream headers, STARTTLS, SASL and everything
after authentication handed to a ``SessionHandler`` (the front end).

Feed it bytes with ``receive``; it appends what to send to ``outbox``.  Three things are
the adapter's to act on afterwards: ``tls_requested`` (send the outbox, wrap the stream in
TLS, call ``tls_established``), ``closing`` (send the outbox, then close), and the
handler's own deliveries into ``outbox`` (``on_output`` is called when they arrive).
Over a WebSocket (``framing=WEBSOCKET``) each ``receive`` is one message and the outbox
holds whole top-level elements, one message each (see ``framing``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lxml import etree

from broker.auth import UserDB
from broker.log import event
from protocols.xmpp import sasl
from protocols.xmpp.framing import STREAM, Framing
from protocols.xmpp.jid import JID
from protocols.xmpp.stream import NS_CLIENT, StreamClosed, StreamError, StreamOpened

log = logging.getLogger("broker.xmpp")

NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
#: failed authentication attempts allowed on one stream before it is closed
MAX_AUTH_FAILURES = 3


class SessionHandler(Protocol):
    """What the front end provides for authenticated streams."""

    def features(self, conn: XMPPConnection) -> str:
        """Stream features offered after authentication (bind, sm, csi...)."""

    def element(self, conn: XMPPConnection, el: etree._Element) -> None:
        """A top-level element of an authenticated stream (bind, stanzas, nonzas)."""

    def lost(self, conn: XMPPConnection) -> None:
        """The stream is ending, however it ends (called once or more)."""

    def pre_auth_features(self, conn: XMPPConnection) -> str:
        """Extra stream features before authentication (in-band registration)."""

    def pre_auth_iq(self, conn: XMPPConnection, iq: etree._Element) -> None:
        """An IQ before authentication (in-band registration); StreamError if unwanted."""


@dataclass(frozen=True)
class StreamSettings:
    domain: str
    max_stanza_size: int = 262_144
    max_depth: int = 100
    #: seconds a session with stream management waits to be resumed (XEP-0198)
    resume_timeout: int = 300
    #: in-band registration (XEP-0077) offered
    registration: bool = False
    #: seconds a stream may be quiet before the server pings it (0: never), and seconds
    #: the ping may go unanswered before the stream is closed
    ping_interval: float = 60.0
    ping_timeout: float = 30.0


class XMPPConnection:
    def __init__(
        self,
        settings: StreamSettings,
        users: UserDB,
        handler: SessionHandler,
        *,
        peer: str,
        peer_loopback: bool,
        tls_available: bool,
        secure: bool = False,
        framing: Framing = STREAM,
    ) -> None:
        self.settings = settings
        self.domain = settings.domain
        self.users = users
        self.handler = handler
        self.peer = peer
        self.peer_loopback = peer_loopback
        self.framing = framing
        self.tls_available = tls_available and not framing.websocket
        #: the stream runs over TLS (direct TLS, or after STARTTLS)
        self.secure = secure
        self.outbox = bytearray()
        self.on_output: Callable[[], None] | None = None
        #: set while publishers wait for this stream's outbox to go out (``backlog_over``)
        self.on_drained: Callable[[], None] | None = None
        self.parser = framing.parser(settings.max_stanza_size, settings.max_depth)
        self.stream_id = ""
        self.header_sent = False
        self.tls_requested = False
        self.closing = False
        #: the authenticated user's name and, once a resource is bound, the full JID
        self.username: str | None = None
        self.jid: JID | None = None
        #: counted against the user's connection limit (at bind)
        self.counted = False
        #: the stream error we ended the stream with, if any
        self.stream_error: str | None = None
        #: the output queued by this read confirms a stored change (a roster set): the
        #: adapter holds it until the store has committed
        self.sync_before_output = False
        self._sasl: sasl.SaslExchange | None = None
        self._auth_failures = 0
        #: the stream restarted while the current read was being handled
        self._restarted = False

    # --- output ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        was_empty = not self.outbox
        self.outbox += data
        if was_empty and self.on_output is not None:
            self.on_output()

    def backlog_over(self) -> None:
        """The outbox went out (or the stream ended): publishers waiting for it go on."""
        drained, self.on_drained = self.on_drained, None
        if drained is not None:
            drained()

    def close(self, condition: str | None = None, text: str = "") -> None:
        """End the stream, with a stream error if ``condition`` is given."""
        if self.closing:
            return
        if not self.header_sent:
            self._send_header()
        if condition is not None:
            self.stream_error = condition
            self.write(self.framing.error(condition, text))
        self.write(self.framing.end)
        self._closed()

    def _closed(self) -> None:
        self.closing = True
        self.backlog_over()
        self.parser.close()
        if self.on_output is not None:
            self.on_output()  # the adapter finishes once the outbox is out
        self.handler.lost(self)

    # --- input -----------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self.closing:
            return
        self._restarted = False
        try:
            for item in self.parser.feed(data):
                if self.closing or self.tls_requested or self._restarted:
                    return  # what the client sent after it is not part of the new stream
                if isinstance(item, StreamOpened):
                    self._opened(item.attributes)
                elif isinstance(item, StreamClosed):
                    self.close()
                else:
                    self._element(item)
        except StreamError as exc:
            event(log, logging.INFO, "xmpp stream error", peer=self.peer, error=str(exc))
            self.close(exc.condition, exc.text)

    def quiet(self) -> None:
        """The peer has sent nothing for a while: drop the parser until it does."""
        self.parser.release()

    def tls_established(self) -> None:
        """The adapter wrapped the stream in TLS: the client starts a new stream."""
        self.tls_requested = False
        self.secure = True
        self._restart()

    def _restart(self) -> None:
        self.parser.reset()
        self.header_sent = False
        self._restarted = True

    def _opened(self, attributes: dict[str, str]) -> None:
        self._send_header()
        if attributes.get("to", self.domain).lower() != self.domain:
            raise StreamError("host-unknown", "this server serves " + self.domain)
        if not attributes.get("version", "").startswith("1."):
            raise StreamError("unsupported-version", "XMPP 1.0 streams only")
        self.write(self.framing.features(self._features()))

    def _send_header(self) -> None:
        self.stream_id = secrets.token_hex(8)
        self.header_sent = True
        self.write(self.framing.header(self.stream_id, self.domain))

    def _features(self) -> str:
        if self.username is not None:
            return self.handler.features(self)
        features = ""
        tls_required = not self.peer_loopback
        if not self.secure and self.tls_available:
            required = "<required/>" if tls_required else ""
            features += f"<starttls xmlns='{NS_TLS}'>{required}</starttls>"
        if self.secure or not tls_required:
            offered = "".join(
                f"<mechanism>{m}</mechanism>" for m in sasl.mechanisms(self._plain_allowed)
            )
            features += f"<mechanisms xmlns='{NS_SASL}'>{offered}</mechanisms>"
        return features + self.handler.pre_auth_features(self)

    @property
    def _plain_allowed(self) -> bool:
        return self.secure or self.peer_loopback

    def _element(self, el: etree._Element) -> None:
        if self.username is not None:
            self.handler.element(self, el)
            return
        tag = el.tag
        if tag == f"{{{NS_TLS}}}starttls":
            self._starttls()
        elif tag == f"{{{NS_SASL}}}auth":
            self._auth(el)
        elif tag == f"{{{NS_SASL}}}response":
            self._response(el)
        elif tag == f"{{{NS_SASL}}}abort":
            self._sasl = None
            self._fail("aborted")
        elif tag == f"{{{NS_CLIENT}}}iq":
            self.handler.pre_auth_iq(self, el)
        else:
            raise StreamError("not-authorized", "authenticate first")

    def _starttls(self) -> None:
        if self.secure or not self.tls_available:
            self.write(f"<failure xmlns='{NS_TLS}'/>".encode())
            self.write(self.framing.end)
            self._closed()
            return
        self.write(f"<proceed xmlns='{NS_TLS}'/>".encode())
        self.tls_requested = True

    def _auth(self, el: etree._Element) -> None:
        mechanism = el.get("mechanism", "")
        if not self.secure and not self.peer_loopback:
            self._fail("encryption-required")
            return
        if mechanism not in sasl.mechanisms(self._plain_allowed):
            self._fail("invalid-mechanism")
            return
        self._sasl = sasl.SaslExchange(mechanism, self.users, self.domain, self.peer_loopback)
        try:
            self._answer(self._sasl.start(_decode(el.text)))
        except sasl.SaslFailure as exc:
            self._fail(exc.condition, exc.text)

    def _response(self, el: etree._Element) -> None:
        if self._sasl is None:
            self._fail("malformed-request", "no authentication in progress")
            return
        try:
            self._answer(self._sasl.respond(_decode(el.text) or b""))
        except sasl.SaslFailure as exc:
            self._fail(exc.condition, exc.text)

    def _answer(self, result: sasl.Challenge | sasl.Success) -> None:
        data = base64.b64encode(result.data).decode() if result.data else ""
        if isinstance(result, sasl.Challenge):
            self.write(f"<challenge xmlns='{NS_SASL}'>{data}</challenge>".encode())
            return
        self._sasl = None
        self.username = result.username
        self.write(f"<success xmlns='{NS_SASL}'>{data}</success>".encode())
        event(log, logging.DEBUG, "xmpp authenticated", peer=self.peer, user=result.username)
        self._restart()

    def _fail(self, condition: str, text: str = "") -> None:
        self._sasl = None
        self._auth_failures += 1
        self.write(f"<failure xmlns='{NS_SASL}'><{condition}/></failure>".encode())
        event(log, logging.INFO, "xmpp authentication failed", peer=self.peer, reason=condition)
        if self._auth_failures >= MAX_AUTH_FAILURES:
            self.close("policy-violation", "too many failed authentication attempts")


def _decode(text: str | None) -> bytes | None:
    """SASL data: base64, ``=`` for an empty response, None for none (RFC 6120 6.4.2)."""
    if not text:
        return None
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise sasl.SaslFailure("incorrect-encoding") from None
