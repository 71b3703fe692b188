"""One MQTT connection as a sans-I/O state machine.

Bytes go in through ``receive``; bytes to send collect in ``outbox`` (and ``on_output`` is
called so the adapter wakes its writer).  Packets are handled in a plain loop against the
core, so one read that carries a hundred PUBLISH packets routes them all and the replies go
out in one write.  Acknowledgements of messages that reached a durable queue wait in
``acks_after_sync`` until the adapter has awaited the store, then follow in order.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING

from broker import auth
from broker.errors import BrokerError
from broker.log import event
from protocols.mqtt import codec, enhanced_auth, shared
from protocols.mqtt.aliases import OutboundAliases
from protocols.mqtt.codec import MQTTError, stamp_packet_ids
from protocols.mqtt.enhanced_auth import AuthFailed, ScramExchange
from protocols.mqtt.limits import OUTPUT_BACKLOG
from protocols.mqtt.mapping import (
    V3_QOS1,
    encode_qos,
    encode_qos0,
    message_from_publish,
    message_topic,
    messages_from_publishes,
    qos1_pieces,
)
from protocols.mqtt.mapping5 import (
    build_publish,
    build_publishes,
    encode_publish5,
    inbound_template,
    message_from_publish5,
    messages_from_publish5,
    publish_template,
    share_key,
)
from protocols.mqtt.properties import TOPIC_ALIAS_INVALID, encode_varint
from protocols.mqtt.reasons import (
    BAD_AUTH_METHOD,
    BAD_CREDENTIALS,
    CONNACK_FOR_ERROR,
    CONTINUE_AUTHENTICATION,
    DISCONNECT_WITH_WILL,
    FILTER_INVALID,
    IDENTIFIER_REJECTED,
    KEEP_ALIVE_TIMEOUT,
    NO_MATCHING_SUBSCRIBERS,
    NO_SUBSCRIPTION_EXISTED,
    NOT_AUTHORIZED,
    NOT_AUTHORIZED_5,
    PACKET_ID_NOT_FOUND,
    PAYLOAD_FORMAT_INVALID,
    QUOTA_EXCEEDED,
    REAUTHENTICATE,
    RECEIVE_MAXIMUM_EXCEEDED,
    SESSION_TAKEN_OVER,
    SUBACK_FAILURE,
    TEXT,
    UNACCEPTABLE_PROTOCOL,
)

if TYPE_CHECKING:
    from broker.message import Message
    from protocols.mqtt.frontend import MQTTFrontEnd
    from protocols.mqtt.session import Session

log = logging.getLogger("broker.mqtt")


PINGRESP = b"\xd0\x00"
#: Session Expiry Interval meaning "never" (MQTT 5 3.1.2.11.2).
NEVER = 0xFFFFFFFF
#: The largest packet MQTT can express.
MAX_PACKET = 268_435_455
#: MQTT 5 streams (topic encodings) kept per client, beyond the current one.
STREAMS_KEPT = 256


#: Reason strings are cut to this many characters (they must not push a packet past the
#: client's Maximum Packet Size).
REASON_STRING_MAX = 120


def _continues(stream: tuple | None, message: Message, topic: str | None) -> bool:
    """Whether ``message`` on ``topic`` continues an MQTT 5 ``stream`` (the same
    properties, extra and topic), whose template then encodes it."""
    return (
        stream is not None
        and stream[0] is message.properties
        and stream[1] is message.extra
        and stream[2] == topic
    )


def _reason_string(text: str | None) -> dict:
    return {"reason_string": text[:REASON_STRING_MAX]} if text else {}


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class MQTTConnection:
    #: slots: an idle connection's attributes would otherwise take a dict of its own (too
    #: many for the instances to share their keys)
    __slots__ = (
        "_auth_connect",
        "_auth_exchange",
        "_auth_method",
        "_backlogged",
        "_can_read",
        "_can_write",
        "_claimed",
        "_connect_expiry",
        "_decode_error",
        "_problem_information",
        "_qos1_shape",
        "_stream",
        "_streams",
        "acks_after_sync",
        "aliases_out",
        "broker",
        "client_id",
        "closing",
        "connected",
        "decoder",
        "flow",
        "front",
        "keepalive",
        "level",
        "live_key",
        "max_packet_out",
        "on_kick",
        "on_output",
        "outbox",
        "peer",
        "peer_loopback",
        "publisher",
        "read_deadline",
        "session",
        "topic_aliases",
        "username",
        "will",
    )

    def __init__(self, front: MQTTFrontEnd, *, peer: str, peer_loopback: bool) -> None:
        self.front = front
        self.broker = front.broker
        self.peer = peer
        self.peer_loopback = peer_loopback
        self.decoder = codec.Decoder(front.settings.max_packet_size, runs=True)
        self.outbox = bytearray()
        self.acks_after_sync: list[bytes] = []
        self.on_output: Callable[[], None] = lambda: None
        self.on_kick: Callable[[], None] = lambda: None
        #: when, on the adapter's clock, its wait for the client's next bytes runs out
        #: (``receive_timeout`` after it began): infinite while it is not waiting
        self.read_deadline = math.inf
        self.level = 4
        self.connected = False
        self.closing = False
        self.keepalive = 0
        self.client_id = ""
        self.username = ""
        self.session: Session | None = None
        self.will: codec.Will | None = None
        self._can_write = False
        self._can_read = False
        self.publisher = False
        self.max_packet_out = MAX_PACKET
        self.topic_aliases: dict[int, str] = {}
        self.aliases_out: OutboundAliases | None = None
        #: MQTT 5: the encoding of the last stream of messages sent (see publish_packet):
        #: (properties, extra, topic, template, live_key); recent ones by topic; and the
        #: key the current one's encodings are shared under in a message's cache
        self._stream: tuple | None = None
        self._streams: dict[str, tuple] = {}
        #: the shape of the last QoS 1 PUBLISH packets built (see ``_qos1_shape_for``)
        self._qos1_shape: tuple | None = None
        self.live_key: tuple | None = None
        self._backlogged = False
        self.flow = front.broker.flow
        self._decode_error: MQTTError | None = None
        self._connect_expiry = 0
        self._claimed = False  # counted in the user's connections
        self._problem_information = True
        #: enhanced authentication: the exchange under way, the CONNECT waiting for it, and
        #: the method a re-authentication must use
        self._auth_exchange: ScramExchange | None = None
        self._auth_connect: codec.Connect | None = None
        self._auth_method: str | None = None

    # -- driving ------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Handle every complete packet in ``data``; protocol errors close the connection."""
        packets = self.decode(data)
        self.handle(packets, 0, len(packets))
        self.decoded()

    def decode(self, data: bytes) -> list:
        """The complete packets in ``data``.  A malformed packet ends the list; its error
        is reported by ``decoded`` once the packets before it have been handled."""
        self.broker.stats.bytes_received += len(data)
        try:
            return self.decoder.feed(data)
        except MQTTError as exc:
            self._decode_error = exc
            return exc.packets

    def decoded(self) -> None:
        """Every packet of the last ``decode`` was handled."""
        exc, self._decode_error = self._decode_error, None
        if exc is not None and not self.closing:
            self._protocol_error(exc)

    def handle(self, packets: list, start: int, stop: int) -> None:
        """Handle ``packets[start:stop]``: the adapter hands over slices so that a huge read
        from one publisher can be interleaved with other connections' work."""
        session = self.session
        acked = False
        index = start
        try:
            while index < stop:
                if self.closing:
                    return
                packet = packets[index]
                kind = type(packet)
                if kind is codec.Publish:
                    if packet.qos < 2 and not packet.retain and self.connected:
                        index = self._publish_run(packets, index, stop)
                        continue
                    self._publish(packet)
                elif kind is codec.Publishes:
                    self._publishes(packet)
                elif kind is codec.Pubacks and session is not None:
                    session.acked(packet.packet_ids)
                    self.broker.stats.messages_received += len(packet.packet_ids) - 1
                    acked = True
                elif kind is codec.Puback and session is not None:
                    session.acked((packet.packet_id,))
                    acked = True
                else:
                    self._control(packet)
                    session = self.session
                    acked = True
                index += 1
        except MQTTError as exc:
            self._protocol_error(exc)
        finally:
            self.broker.stats.messages_received += stop - start
            if acked and session is not None and not self.closing:
                session.dispatch()

    def _control(self, packet: object) -> None:
        if not self.connected:
            if self._auth_connect is not None and type(packet) is codec.Auth:
                self._auth(packet)
                return
            if isinstance(packet, codec.Connect) and self._auth_connect is None:
                self._connect(packet)
                return
            raise MQTTError("first packet must be CONNECT", codec.PROTOCOL_ERROR)
        session = self.session
        kind = type(packet)
        if kind is codec.Pubrel:
            known = packet.packet_id in session.incoming_qos2
            if known:
                session.incoming_qos2.pop(packet.packet_id, None)
                session.save()
            if known or self.level < 5:
                self.write(bytes((0x70, 2)) + packet.packet_id.to_bytes(2, "big"))
            else:
                pubcomp = codec.Pubcomp(
                    packet.packet_id, PACKET_ID_NOT_FOUND, self._problem(PACKET_ID_NOT_FOUND)
                )
                self.write(codec.encode(pubcomp, 5))
        elif kind is codec.Pubrec:
            session.pubrec(packet.packet_id)
            self.write(bytes((0x62, 2)) + packet.packet_id.to_bytes(2, "big"))
        elif kind is codec.Pubcomp:
            session.pubcomp(packet.packet_id)
        elif kind is codec.Subscribe:
            self._subscribe(packet)
        elif kind is codec.Unsubscribe:
            codes = [
                0 if session.unsubscribe(f) or self.level < 5 else NO_SUBSCRIPTION_EXISTED
                for f in packet.filters
            ]
            unsuback = codec.Unsuback(packet.packet_id, codes, self._problem(*codes))
            self.write(codec.encode(unsuback, self.level))
        elif kind is codec.Pingreq:
            self.write(PINGRESP)
        elif kind is codec.Disconnect:
            expiry = packet.properties.get("session_expiry_interval")
            if expiry is not None:
                if expiry and not self._connect_expiry:  # MQTT 5 3.14.2.2.2
                    raise MQTTError("session expiry set at DISCONNECT only", codec.PROTOCOL_ERROR)
                session.set_expiry(None if expiry == NEVER else expiry)
            if packet.reason_code != DISCONNECT_WITH_WILL:
                self.will = None
            self.closing = True
        elif kind is codec.Auth and self._auth_method is not None:
            self._auth(packet)
        elif kind is codec.Connect:
            raise MQTTError("second CONNECT", codec.PROTOCOL_ERROR)
        else:
            raise MQTTError(f"unexpected {kind.__name__}", codec.PROTOCOL_ERROR)

    # -- CONNECT ------------------------------------------------------------------------

    def _connect(self, packet: codec.Connect) -> None:
        self.level = level = packet.protocol_level
        if level not in (3, 4, 5):
            self._refuse(UNACCEPTABLE_PROTOCOL, "protocol level not supported")
            return
        if not packet.client_id and not packet.clean_start and level < 5:
            self._refuse(IDENTIFIER_REJECTED, "empty client id needs clean session")
            return
        method = packet.properties.get("authentication_method") if level == 5 else None
        if method is not None:
            self._start_enhanced_auth(packet, method)
            return
        try:
            user = self.broker.users.authenticate(
                packet.username, packet.password, peer_loopback=self.peer_loopback
            )
        except auth.AuthError as exc:
            code = BAD_CREDENTIALS if exc.reason == "bad_credentials" else NOT_AUTHORIZED
            self._refuse(code, f"authentication failed: {exc.reason}", user=packet.username)
            return
        self._accept(packet, user)

    def _start_enhanced_auth(self, packet: codec.Connect, method: str) -> None:
        """MQTT 5 enhanced authentication: SCRAM's first round trip (4.12)."""
        if method not in enhanced_auth.METHODS:
            self._refuse(BAD_AUTH_METHOD, f"authentication method {method!r} not supported")
            return
        exchange = ScramExchange(method, self.broker.users.scram_lookup(method))
        try:
            challenge = exchange.first(packet.properties.get("authentication_data", b""))
        except AuthFailed as exc:
            self._refuse(BAD_CREDENTIALS, f"authentication failed: {exc}")
            return
        self._auth_exchange = exchange
        self._auth_connect = packet
        self._send_auth(CONTINUE_AUTHENTICATION, method, challenge)

    def _auth(self, packet: codec.Auth) -> None:
        """An AUTH packet: the client's SCRAM proof, or the start of a re-authentication."""
        exchange = self._auth_exchange
        method = packet.properties.get("authentication_method")
        data = packet.properties.get("authentication_data", b"")
        if packet.reason_code == REAUTHENTICATE and self.connected and exchange is None:
            if method != self._auth_method:
                raise MQTTError("re-authentication with another method", codec.PROTOCOL_ERROR)
            exchange = ScramExchange(method, self.broker.users.scram_lookup(method))
            try:
                challenge = exchange.first(data)
            except AuthFailed as exc:
                raise MQTTError(f"re-authentication failed: {exc}", BAD_CREDENTIALS[1]) from None
            self._auth_exchange = exchange
            self._send_auth(CONTINUE_AUTHENTICATION, method, challenge)
            return
        if (
            exchange is None
            or packet.reason_code != CONTINUE_AUTHENTICATION
            or method != exchange.method
        ):
            raise MQTTError("unexpected AUTH", codec.PROTOCOL_ERROR)
        self._auth_exchange = None
        try:
            verifier = exchange.final(data)
            user = self.broker.users.authorize(exchange.username, peer_loopback=self.peer_loopback)
        except (AuthFailed, auth.AuthError) as exc:
            if self.connected:
                raise MQTTError(f"re-authentication failed: {exc}", BAD_CREDENTIALS[1]) from None
            self._refuse(BAD_CREDENTIALS, f"authentication failed: {exc}", exchange.username)
            return
        if self.connected:
            if user.name != self.username:
                raise MQTTError("re-authenticated as another user", NOT_AUTHORIZED[1])
            self._send_auth(0, method, verifier)
            return
        connect, self._auth_connect = self._auth_connect, None
        self._auth_method = method
        self._accept(
            connect, user, {"authentication_method": method, "authentication_data": verifier}
        )

    def _send_auth(self, reason: int, method: str, data: bytes) -> None:
        props = {"authentication_method": method, "authentication_data": data}
        self.write(codec.encode(codec.Auth(reason, props), 5))

    def _accept(
        self, packet: codec.Connect, user: auth.User, auth_props: dict | None = None
    ) -> None:
        """The client has proven who it is: check its rights, open its session, CONNACK."""
        level = self.level
        props = packet.properties if level == 5 else {}
        self._problem_information = props.get("request_problem_information", 1) == 1
        client_id = packet.client_id
        assigned = None
        if not client_id:
            client_id = assigned = "auto-" + uuid.uuid4().hex
        vhost = self.front.vhost.name
        if not auth.has_vhost_access(user, vhost):
            self._refuse(NOT_AUTHORIZED, "no access to vhost", user=user.name)
            return
        if not self._claim_connection(client_id, user.name):
            self._refuse(QUOTA_EXCEEDED, "too many connections for the user", user=user.name)
            return
        self.username = user.name
        self.client_id = client_id
        # RabbitMQ's model: publishing writes to amq.topic, subscribing reads from it
        self._can_write = auth.can(user, vhost, "write", "amq.topic")
        self._can_read = auth.can(user, vhost, "read", "amq.topic")
        self.keepalive = packet.keepalive
        max_keepalive = self.front.settings.max_keepalive
        if level == 5 and max_keepalive and not 0 < self.keepalive <= max_keepalive:
            self.keepalive = max_keepalive  # told to the client as Server Keep Alive
        self.will = packet.will
        self._takeover(client_id)
        if level == 5:
            expiry = props.get("session_expiry_interval", 0)
            self._connect_expiry = expiry
        else:
            expiry = 0 if packet.clean_start else NEVER
        session, present = self.front.open_session(
            client_id, packet.clean_start, None if expiry == NEVER else expiry
        )
        if level == 5:
            session.max_inflight = min(
                self.front.settings.max_inflight, props.get("receive_maximum", 65535)
            )
            self.max_packet_out = props.get("maximum_packet_size", MAX_PACKET)
            if props.get("topic_alias_maximum"):
                self.aliases_out = OutboundAliases(props["topic_alias_maximum"])
        session.attach(self)
        verdict = self._subscription_verdict
        session.filtered = dict.fromkeys(
            [f for f in session.subscriptions if verdict(f) == "filter"]
            + [f for f in session.shared if verdict(shared.split(f)[1]) == "filter"]
        )
        self.session = session
        self.connected = True
        self.broker.stats.connected("mqtt")
        if level == 5:
            capabilities = self._capabilities(assigned)
            if self.keepalive != packet.keepalive:
                capabilities["server_keep_alive"] = self.keepalive
            if props.get("request_response_information"):
                capabilities["response_information"] = f"responses/{client_id}"
            if auth_props:
                capabilities.update(auth_props)
            self.write(codec.encode(codec.Connack(present, 0, capabilities), 5))
        else:
            self.write(bytes((0x20, 2, 1 if present else 0, 0)))
        session.resend_inflight(self)
        session.dispatch()

    def _capabilities(self, assigned: str | None) -> dict:
        """CONNACK properties for MQTT 5: what this server really supports (absent means
        the spec's default: QoS 2, retain and wildcards available, receive maximum 65535)."""
        props: dict = {
            "topic_alias_maximum": self.front.settings.topic_alias_maximum,
            "receive_maximum": self.front.settings.max_inflight,
        }
        if self.front.settings.max_packet_size < MAX_PACKET:
            props["maximum_packet_size"] = self.front.settings.max_packet_size
        if assigned is not None:
            props["assigned_client_identifier"] = assigned
        return props

    def _claim_connection(self, client_id: str, user: str) -> bool:
        """Count this connection against the user's limit; one that takes over a connection
        of the same user inherits its place."""
        existing = self.front.sessions.get(client_id)
        old = existing.connection if existing is not None else None
        if old is not None and old.username == user and old._claimed:
            old._claimed = False
        elif not self.broker.claim_connection(user):
            return False
        self._claimed = True
        return True

    def _takeover(self, client_id: str) -> None:
        """MQTT 3.1.1 3.1.4: a second connection with the same client id replaces the
        first, which is closed as if it dropped (its will is published)."""
        existing = self.front.sessions.get(client_id)
        old = existing.connection if existing is not None else None
        if old is not None and old is not self:
            event(log, logging.INFO, "mqtt session taken over", client_id=client_id)
            old.disconnect(SESSION_TAKEN_OVER)
            old.connection_lost()
            old.on_kick()

    def _refuse(self, codes: tuple[int, int], why: str, user: str | None = None) -> None:
        code = codes[1] if self.level == 5 else codes[0]
        if self.level == 5:
            self.write(codec.encode(codec.Connack(False, code, _reason_string(why)), 5))
        else:
            self.write(bytes((0x20, 2, 0, code)))
        event(log, logging.INFO, "mqtt connect refused", peer=self.peer, reason=why, user=user)
        self.closing = True

    # -- PUBLISH ------------------------------------------------------------------------

    def _publish(self, packet: codec.Publish) -> None:
        if not self.connected:
            raise MQTTError("PUBLISH before CONNECT", codec.PROTOCOL_ERROR)
        qos = packet.qos
        session = self.session
        stats = self.broker.stats
        self.publisher = True
        stats.publish_received += 1
        if qos == 2 and packet.packet_id in session.incoming_qos2:
            self._ack(b"\x50\x02" + packet.packet_id.to_bytes(2, "big"), False)
            return
        level5 = self.level == 5
        if level5:
            topic = self._alias_topic(packet.topic, packet.properties)
            reason = self._publish_refusal(packet.properties, qos, packet.payload, topic)
        else:
            topic = packet.topic
            reason = 0 if self._allowed("publish", topic) else NOT_AUTHORIZED_5
        stored = False
        if reason:
            stats.publish_dropped += 1
        else:
            properties = packet.properties if level5 else None
            matched, stored = self._route(
                topic, packet.payload, qos, packet.retain, packet.raw, properties
            )
            if not matched and level5:
                reason = NO_MATCHING_SUBSCRIBERS
        if qos == 1:
            if reason and level5:
                puback = codec.Puback(packet.packet_id, reason, self._problem(reason))
                self._ack(codec.encode(puback, 5), stored)
            else:
                self._ack(codec.encode_puback(packet.packet_id), stored)
        elif qos == 2:
            if reason < 0x80:  # a refused QoS 2 publish ends here: no PUBREL follows
                session.incoming_qos2[packet.packet_id] = None
                session.save()
            if level5:
                pubrec = codec.Pubrec(packet.packet_id, reason, self._problem(reason))
            else:
                pubrec = codec.Pubrec(packet.packet_id)
            self._ack(codec.encode(pubrec, self.level), stored or session.durable)

    def _publish_refusal(self, props: Mapping, qos: int, payload: bytes, topic: str) -> int:
        """The reason code refusing an MQTT 5 publish, 0 to accept it; a protocol
        violation raises."""
        if "subscription_identifier" in props:
            raise MQTTError("subscription identifier from a client", codec.PROTOCOL_ERROR)
        if qos == 2 and len(self.session.incoming_qos2) >= self.front.settings.max_inflight:
            raise MQTTError("more QoS 2 publishes than Receive Maximum", RECEIVE_MAXIMUM_EXCEEDED)
        if props.get("payload_format_indicator") == 1 and not _is_utf8(payload):
            if not qos:
                raise MQTTError("payload is not UTF-8", PAYLOAD_FORMAT_INVALID)
            return PAYLOAD_FORMAT_INVALID
        return 0 if self._allowed("publish", topic) else NOT_AUTHORIZED_5

    def _alias_topic(self, topic: str, properties: Mapping) -> str:
        """MQTT 5 topic aliases from the client: a topic with an alias sets it, an empty
        topic with an alias uses it (3.3.2.3.4)."""
        alias = properties.get("topic_alias")
        if alias is None:
            return topic
        if alias > self.front.settings.topic_alias_maximum:
            raise MQTTError(f"topic alias {alias} out of range", TOPIC_ALIAS_INVALID)
        if topic:
            self.topic_aliases[alias] = topic
            return topic
        topic = self.topic_aliases.get(alias)
        if topic is None:
            raise MQTTError(f"topic alias {alias} was never set", codec.PROTOCOL_ERROR)
        return topic

    def _publish_run(self, packets: list, index: int, stop: int) -> int:
        """Publishes from ``index`` on that share topic, properties and QoS (0 or 1) and do
        not retain: a telemetry stream sends long runs of them, so the run is checked and
        routed once and its PUBACKs go out together.  Returns the index after the run."""
        first = packets[index]
        topic, qos, properties = first.topic, first.qos, first.properties
        end = index + 1
        while end < stop:
            packet = packets[end]
            if type(packet) is not codec.Publish or packet.topic != topic:
                break
            if packet.qos != qos or packet.retain or packet.properties is not properties:
                break
            end += 1
        if end == index + 1 or properties.get("payload_format_indicator") == 1:
            self._publish(first)  # a run of one, or each payload needs its own check
            return index + 1
        run = packets[index:end]
        payloads = [packet.payload for packet in run]
        packet_ids = [packet.packet_id for packet in run] if qos else None
        if self.level == 5:  # QoS 0: a subscriber encoding alike may get the first as is
            raws = None if first.raw is None else [first.raw]
        else:
            raws = [packet.raw for packet in run]
        self._route_run(topic, qos, properties, payloads, packet_ids, raws)
        return end

    def _publishes(self, run: codec.Publishes) -> None:
        """A run of publishes as the decoder read it (see ``_route_run``)."""
        if not self.connected:
            raise MQTTError("PUBLISH before CONNECT", codec.PROTOCOL_ERROR)
        properties = run.properties
        if self.level == 5 and properties.get("payload_format_indicator") == 1:
            for packet in run.each():  # each payload needs its own check
                self._publish(packet)
            return
        self.broker.stats.messages_received += len(run.payloads) - 1
        self._route_run(run.topic, run.qos, properties, run.payloads, run.packet_ids, run.raws)

    def _route_run(
        self,
        topic: str,
        qos: int,
        properties: Mapping,
        payloads: list[bytes],
        packet_ids: list[int] | None,
        raws: list[bytes | None] | None,
    ) -> None:
        """Route a run of publishes of one topic, QoS (0 or 1) and properties, none
        retained, checked once for the run, and ack them together.  ``raws``: the packets
        as received (3.x: each, forwarded as is; MQTT 5 QoS 0: the first)."""
        count = len(payloads)
        stats = self.broker.stats
        stats.publish_received += count
        self.publisher = True
        level5 = self.level == 5
        if level5:
            topic = self._alias_topic(topic, properties)
            reason = self._publish_refusal(properties, qos, payloads[0], topic)
        else:
            reason = 0 if self._allowed("publish", topic) else NOT_AUTHORIZED_5
        stored = False
        if reason:
            stats.publish_dropped += count
        else:
            user = self.username
            if level5:
                messages = messages_from_publish5(topic, payloads, qos, properties, self, user)
                if raws:  # (the first only: the rest of a run goes out as one join of bodies)
                    raw = raws[0]
                    messages[0].cache = {share_key(inbound_template(raw), topic): raw}
            else:
                messages = messages_from_publishes(topic, payloads, raws, qos, self, user)
            try:
                result = self.front.vhost.publish_many(messages)
                routed, stored = result.routed, result.stored
            except BrokerError as exc:
                event(log, logging.WARNING, "mqtt publish failed", topic=topic, error=exc.message)
                routed = 0
            if level5 and not routed:
                reason = NO_MATCHING_SUBSCRIBERS
        if packet_ids:
            if reason and level5:
                problem = self._problem(reason)
                acks = b"".join(
                    [codec.encode(codec.Puback(i, reason, problem), 5) for i in packet_ids]
                )
            else:
                acks = codec.encode_pubacks(packet_ids)
            self._ack(acks, stored)

    def _route(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        raw: bytes | None = None,
        properties: dict | None = None,
    ) -> tuple[bool, bool]:
        """Publish into the core; returns whether any queue matched and whether the
        message went to durable storage.  ``properties``: an MQTT 5 publish's, mapped onto
        the core message.  A subscriber's full queue still matched: its drop is that
        subscriber's loss, not the publisher's error (as Mosquitto and the run path
        through ``publish_many`` report it)."""
        if properties is None:
            message = message_from_publish(topic, payload, qos, self, self.username, raw)
        else:
            message = message_from_publish5(topic, payload, qos, properties, self, self.username)
        if retain:
            message.extra = {**(message.extra or {}), "retain": True}
            self.broker.retained.set(topic, message)
        try:
            result = self.front.vhost.publish(message)
        except BrokerError as exc:
            event(log, logging.WARNING, "mqtt publish failed", topic=topic, error=exc.message)
            return False, False
        matched = result.routed > 0 or result.rejected
        return matched, result.stored or (retain and qos > 0)

    def _ack(self, packet: bytes, after_sync: bool) -> None:
        if after_sync or self.acks_after_sync:
            self.acks_after_sync.append(packet)
        else:
            self.write(packet)

    def synced(self) -> None:
        """The store confirmed everything routed so far: release the held acks."""
        acks, self.acks_after_sync = self.acks_after_sync, []
        self.write(b"".join(acks))

    def _allowed(self, action: str, topic: str) -> bool:
        if not (self._can_write if action == "publish" else self._can_read):
            return False
        acl = self.broker.acl
        return not acl or acl.check(self.username, self.client_id, topic, action)

    # -- SUBSCRIBE ----------------------------------------------------------------------

    def _subscribe(self, packet: codec.Subscribe) -> None:
        session = self.session
        codes: list[int] = []
        granted: list[tuple[str, int]] = []
        subscription_id = packet.properties.get("subscription_identifier", (0,))[0]
        for topic_filter, options in packet.topics:
            group = None
            if shared.is_shared(topic_filter):
                group = shared.split(topic_filter)
                if group is None:
                    codes.append(FILTER_INVALID if self.level == 5 else SUBACK_FAILURE)
                    continue
                if options.no_local:  # MQTT 5 3.8.3.1
                    raise MQTTError("no local on a shared subscription", codec.PROTOCOL_ERROR)
            verdict = self._subscription_verdict(group[1] if group else topic_filter)
            if verdict == "deny":
                codes.append(self._suback_failure(topic_filter))
                continue
            qos = min(options.qos, 2)
            existed = topic_filter in session.subscriptions or topic_filter in session.shared
            session.subscribe(
                topic_filter,
                qos,
                filtered=verdict == "filter",
                no_local=options.no_local,
                retain_as_published=options.retain_as_published,
                subscription_id=subscription_id,
            )
            codes.append(qos)
            # MQTT 5 retain handling: 0 always send retained, 1 only to a new subscription
            handling = options.retain_handling
            if group is None and (handling == 0 or (handling == 1 and not existed)):
                granted.append((topic_filter, qos))
        suback = codec.Suback(packet.packet_id, codes, self._problem(*codes))
        self.write(codec.encode(suback, self.level))
        ids = [subscription_id] if subscription_id else None
        for topic_filter, qos in granted:
            filtered = topic_filter in session.filtered
            for topic, message in self.broker.retained.match(topic_filter):
                if not filtered or self.may_receive(topic):
                    session.send_retained(message, qos, ids)

    @property
    def only_publishes(self) -> bool:
        """A publisher that consumes nothing: delaying its reads a little costs it no
        round trip (see the adapter's read coalescing)."""
        session = self.session
        return (
            self.publisher
            and session is not None
            and not session.subscriptions
            and not session.shared
        )

    def _suback_failure(self, topic_filter: str) -> int:
        if self.level < 5:
            return SUBACK_FAILURE
        return NOT_AUTHORIZED_5 if codec.valid_topic_filter(topic_filter) else FILTER_INVALID

    def _subscription_verdict(self, topic_filter: str) -> str:
        """allow, deny, or filter (granted, each delivery checked against the ACL)."""
        if not codec.valid_topic_filter(topic_filter) or not self._can_read:
            return "deny"
        acl = self.broker.acl
        return acl.subscription(self.username, self.client_id, topic_filter) if acl else "allow"

    def may_receive(self, topic: str) -> bool:
        return self.broker.acl.check(self.username, self.client_id, topic, "subscribe")

    def _problem(self, *codes: int) -> dict:
        """The reason string for an MQTT 5 acknowledgement carrying ``codes``: empty when
        all succeeded or the client asked for no problem information (3.1.2.11.7)."""
        if self.level < 5 or not self._problem_information:
            return {}
        texts = dict.fromkeys(TEXT.get(code, "") for code in codes if code >= 0x80 or code in TEXT)
        return _reason_string("; ".join(t for t in texts if t))

    # -- output -------------------------------------------------------------------------

    def publish_packet(
        self,
        message: Message,
        qos: int,
        packet_id: int | None,
        retain: bool,
        dup: bool = False,
        subscription_ids: list[int] | None = None,
    ) -> bytes | None:
        """The PUBLISH of ``message`` for this client, or None when it exceeds the client's
        Maximum Packet Size (the message is then dropped for it, MQTT 5 3.1.2.25)."""
        if self.level < 5:
            return (
                encode_qos(message, qos, packet_id, retain, dup)
                if qos
                else encode_qos0(message, retain)
            )
        topic = message.topic or message_topic(message)
        if subscription_ids or message.expires_at is not None:
            return self._publish_packet5(message, qos, packet_id, retain, dup, subscription_ids)
        stream = self._stream_for(message, topic)
        if stream is not None:
            template = stream[3]
            if qos:
                data = build_publish(template, message.body, qos, packet_id, retain, dup)
            else:  # subscribers with the same template share the encoding (a fan-out)
                cache = message.cache
                if cache is None:
                    cache = message.cache = {}
                key = (self.live_key, True) if retain else self.live_key
                data = cache.get(key)
                if data is None:
                    data = cache[key] = build_publish(
                        template, message.body, 0, None, retain, False
                    )
            return data if len(data) <= self.max_packet_out else None
        data = self._publish_packet5(message, qos, packet_id, retain, dup, None)
        if data is not None:
            # the next message of the same stream reuses the encoding of this topic as it
            # stands now (with the alias the client has just learned, if it got one)
            alias = self.aliases_out.assigned.get(topic, 0) if self.aliases_out else 0
            template = publish_template(message, "" if alias else topic, alias)
            key = share_key(template, topic)
            self._stream = stream = (message.properties, message.extra, topic, template, key)
            self.live_key = key
            streams = self._streams
            if len(streams) >= STREAMS_KEPT:
                del streams[next(iter(streams))]
            streams[topic] = stream
        return data

    def _stream_for(self, message: Message, topic: str) -> tuple | None:
        """The MQTT 5 stream ``message`` continues, made the current one: a recent topic
        of this client's with the same properties and extra (a fan-in interleaves the
        streams of many publishers), whose template encodes the message."""
        stream = self._stream
        if _continues(stream, message, topic):
            return stream
        stream = self._streams.get(topic)
        if not _continues(stream, message, topic):
            return None
        self._stream = stream
        self.live_key = stream[4]
        return stream

    def publish_pieces(self, message: Message, packet_id: int) -> tuple[bytes, ...] | None:
        """The QoS 1 PUBLISH (no retain, DUP or subscription ids) of ``message`` as pieces
        for a batch to join, when it needs no encoding of its own: a 3.x packet received
        as QoS 1, or the next message of this MQTT 5 client's stream that fits its Maximum
        Packet Size.  None otherwise: ``publish_packet`` then has the last word."""
        if self.level < 5:
            return qos1_pieces(message, packet_id)
        if message.expires_at is not None:
            return None
        stream = self._stream_for(message, message.topic or message_topic(message))
        shape = None if stream is None else self._qos1_shape_for(stream, len(message.body))
        if shape is None:
            return None
        return shape[2], packet_id.to_bytes(2, "big"), shape[3], message.body

    def _qos1_shape_for(self, stream: tuple, size: int) -> tuple | None:
        """The shape of the stream's QoS 1 packets with bodies of ``size`` bytes (a
        stream's messages of one size share all but packet id and body): (stream, size,
        the bytes before the packet id, those after it, both around a zero packet id),
        or None when such packets exceed the client's Maximum Packet Size."""
        shape = self._qos1_shape
        if shape is None or shape[0] is not stream or shape[1] != size:
            head, tail = stream[3]
            length = len(head) + 2 + len(tail) + size
            prefix = b"\x32" + encode_varint(length) + head
            fits = len(prefix) + 2 + len(tail) + size <= self.max_packet_out
            template = prefix + b"\0\0" + tail
            shape = self._qos1_shape = (stream, size, prefix, tail, template, fits)
        return shape if shape[5] else None

    def qos1_run(self, messages: list[Message], packet_ids: range) -> bytearray | None:
        """The QoS 1 PUBLISH packets (no retain, DUP or subscription ids) of a batch, with
        ``packet_ids``, laid out in one buffer when the messages share a
        shape: 3.x packets received as QoS 1 under one topic and size, or MQTT 5 messages
        of this client's current stream (persistent, no expiry) with bodies of one size
        that fit its Maximum Packet Size.  None for any other batch."""
        first = messages[0]
        topic = first.topic
        if self.level < 5:
            cache = first.cache
            raw = cache.get(V3_QOS1) if cache is not None else None
            if raw is None:
                return None
            size = len(raw)
            raws = []
            for message in messages:
                cache = message.cache
                raw = cache.get(V3_QOS1) if cache is not None else None
                if raw is None or len(raw) != size or message.topic != topic:
                    return None
                raws.append(raw)
            buf = bytearray(b"".join(raws))
            stamp_packet_ids(buf, size - len(first.body) - 2, size, packet_ids)
            return buf
        if not first.persistent or first.expires_at is not None:
            return None
        stream = self._stream_for(first, topic or message_topic(first))
        size = len(first.body)
        shape = None if stream is None else self._qos1_shape_for(stream, size)
        if shape is None:
            return None
        topic, properties, extra = first.topic, first.properties, first.extra
        bodies = [b""]  # the template goes before every body
        for message in messages:
            if (
                message.properties is not properties
                or message.extra is not extra
                or message.expires_at is not None
                or len(message.body) != size
                or message.topic != topic
            ):
                return None
            bodies.append(message.body)
        template = shape[4]
        buf = bytearray(template).join(bodies)
        stamp_packet_ids(buf, len(shape[2]), len(template) + size, packet_ids)
        return buf

    def publish_run(self, messages: list[Message]) -> bytes | None:
        """The QoS 0 PUBLISH packets of a run (one topic, properties and extra; no expiry)
        for this MQTT 5 client, joined, or None when not all fit its Maximum Packet Size.
        Subscribers that encode alike share the run's bytes through its first message."""
        first = messages[0]
        stream, cache = self._stream, first.cache
        if cache is not None and _continues(stream, first, first.topic):
            # a fan-out's later subscribers of one encoding: the run's bytes are made
            joined = cache.get((stream[4], len(messages), self.max_packet_out, "whole"))
            if joined is not None:
                return joined
        if len(messages) > 1 and self._stream_for(first, first.topic or message_topic(first)):
            # the client has this stream's encoding (and knows its alias, if it has one):
            # the whole run is shared by clients of one encoding and limit
            return self._shared_run(messages, 0, "whole")
        data = self.publish_packet(first, 0, None, False)
        if data is None or self._stream is None or len(messages) == 1:
            return data
        # the rest of the run after the first packet, which is this client's own (it may
        # tell the client the topic's alias)
        rest = self._shared_run(messages, 1, "rest")
        return None if rest is None else data + rest

    def _shared_run(self, messages: list[Message], start: int, part: str) -> bytes | None:
        """The current stream's QoS 0 packets of ``messages[start:]``, joined, kept in the
        first message's cache for every client of the same encoding and packet limit;
        None when one is over this client's Maximum Packet Size."""
        key = (self.live_key, len(messages), self.max_packet_out, part)
        first = messages[0]
        cache = first.cache
        if cache is None:
            cache = first.cache = {}
        joined = cache.get(key)
        if joined is None:
            bodies = [message.body for message in messages[start:]]
            head, tail = template = self._stream[3]
            largest = len(head) + len(tail) + max(map(len, bodies))
            if 1 + len(encode_varint(largest)) + largest > self.max_packet_out:
                return None
            joined = cache[key] = build_publishes(template, bodies)
        return joined

    def _publish_packet5(
        self,
        message: Message,
        qos: int,
        packet_id: int | None,
        retain: bool,
        dup: bool,
        subscription_ids: list[int] | None,
    ) -> bytes | None:
        topic = message_topic(message)
        aliases = self.aliases_out
        alias, known = aliases.alias(topic) if aliases is not None else (0, False)
        data = encode_publish5(
            message, qos, packet_id, retain, dup, "" if known else topic, alias, subscription_ids
        )
        if len(data) <= self.max_packet_out:
            return data
        if alias and not known:
            aliases.forget(topic)
        return None

    def send_publish(self, data: bytes) -> None:
        """Queue an encoded PUBLISH (counted for $SYS); ``write`` inlined, it is the
        delivery hot path."""
        self.send_publishes(data, 1)

    def send_publishes(self, data: bytes, count: int) -> None:
        """Queue ``count`` encoded PUBLISH packets, one after the other in ``data``."""
        stats = self.broker.stats
        stats.publish_sent += count
        stats.messages_sent += count
        outbox = self.outbox
        if not outbox:
            outbox += data
            self.on_output()
            return
        outbox += data
        if not self._backlogged and len(outbox) > OUTPUT_BACKLOG:
            self._backlogged = True
            self.flow.backlog(self)

    def write(self, data: bytes) -> None:
        """Queue bytes for the peer; the adapter sends them after the current batch."""
        if not data:
            return
        self.broker.stats.messages_sent += 1
        wake = not self.outbox
        self.outbox += data
        if wake:
            self.on_output()
        elif not self._backlogged and len(self.outbox) > OUTPUT_BACKLOG:
            self._backlogged = True
            self.flow.backlog(self)

    def take_output(self) -> bytes:
        data = bytes(self.outbox)
        self.outbox.clear()
        self.broker.stats.bytes_sent += len(data)
        return data

    def output_drained(self) -> None:
        """The writer sent a batch: publishers waiting for this peer and a session held
        back by a full buffer may resume."""
        if self._backlogged and len(self.outbox) <= OUTPUT_BACKLOG:
            self._backlogged = False
            self.flow.drained(self)
        session = self.session
        if session is not None and self.connected and not self.closing:
            session.dispatch()

    # -- ending -------------------------------------------------------------------------

    def receive_timeout(self) -> float:
        """How long the adapter may wait for the next bytes: the connect timeout before
        CONNECT, 1.5 times the keepalive after (MQTT 3.1.2.10), forever for keepalive 0."""
        if not self.connected:
            return float(self.front.settings.connect_timeout)
        return self.keepalive * 1.5 if self.keepalive else float("inf")

    def timed_out(self) -> None:
        event(log, logging.INFO, "mqtt keepalive expired", client_id=self.client_id, peer=self.peer)
        self.disconnect(KEEP_ALIVE_TIMEOUT)
        self.closing = True

    def disconnect(self, reason: int) -> None:
        """A server-initiated DISCONNECT with a reason code (MQTT 5 only; 3.1.1 just
        closes)."""
        if self.level == 5 and self.connected:
            self.write(codec.encode(codec.Disconnect(reason, _reason_string(TEXT.get(reason))), 5))

    def _protocol_error(self, exc: MQTTError) -> None:
        event(
            log,
            logging.WARNING,
            "mqtt protocol error",
            peer=self.peer,
            client_id=self.client_id,
            reason=f"0x{exc.reason_code:02x}",
            error=str(exc),
        )
        if self.level == 5 and self.connected:
            props = _reason_string(str(exc))
            self.write(codec.encode(codec.Disconnect(exc.reason_code, props), 5))
        elif not self.connected and self.decoder.protocol_level == 5:
            props = _reason_string(str(exc))
            self.write(codec.encode(codec.Connack(False, exc.reason_code, props), 5))
        elif not self.connected and exc.reason_code in CONNACK_FOR_ERROR:
            self.write(bytes((0x20, 2, 0, CONNACK_FOR_ERROR[exc.reason_code])))
        self.closing = True

    def connection_lost(self) -> None:
        """The transport is gone (or is being replaced): publish the will unless the client
        said DISCONNECT, and detach from the session.  Safe to call more than once."""
        self.closing = True
        self.flow.forget(self)
        if self._claimed:
            self._claimed = False
            self.broker.release_connection(self.username)
        if not self.connected:
            return
        self.connected = False
        self.broker.stats.disconnected("mqtt")
        will, self.will = self.will, None
        publish_will = None
        if will is not None and self._allowed("publish", will.topic):
            publish_will = partial(self._publish_will, will)
        session = self.session
        if session is None:
            if publish_will is not None:
                publish_will()
            return
        session.detach(self)
        if session.connection is None:
            delay = will.properties.get("will_delay_interval", 0) if publish_will else 0
            self.front.session_detached(session, publish_will, delay)
        elif publish_will is not None:
            publish_will()

    def _publish_will(self, will: codec.Will) -> None:
        properties = None
        if self.level == 5:
            properties = {k: v for k, v in will.properties.items() if k != "will_delay_interval"}
        self._route(will.topic, will.payload, will.qos, will.retain, None, properties)
