"""One AMQP 0-9-1 connection as a sans-I/O state machine: bytes in through ``receive``,
bytes out through ``outbox`` (the adapter sends them and calls back).

Connection negotiation (start, tune, open), channels, connection and channel exceptions
live here; each channel's methods live in ``channel``.  Publisher confirms and tx.commit-ok
for durably stored messages wait for the store: ``end_of_batch`` tells the adapter to sync,
``synced`` releases them.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import commands

from broker import auth
from broker.auth import AuthError
from broker.errors import NotFound
from broker.log import event
from broker.topics import key_to_mqtt, pattern_to_filter
from protocols.amqp import codec
from protocols.amqp.channel import Channel
from protocols.amqp.codec import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    NOT_ALLOWED,
    UNEXPECTED_FRAME,
    AMQPError,
    BadProtocolHeader,
    ChannelError,
)

if TYPE_CHECKING:
    from broker.auth import User
    from broker.vhost import VHost
    from protocols.amqp.frontend import AMQPFrontEnd

log = logging.getLogger("broker.amqp")

CHANNEL_MAX = 2047  # RabbitMQ's default
#: Bytes queued for the peer beyond which its consumers get no more deliveries.
OUTPUT_HIGH_WATER = 1 << 20
SERVER_CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}

# Connection states.
AWAITING_HEADER, AWAITING_START_OK, AWAITING_TUNE_OK, AWAITING_OPEN, OPEN, CLOSING, CLOSED = range(
    7
)


class AMQPConnection:
    def __init__(self, front: AMQPFrontEnd, *, peer: str, peer_loopback: bool) -> None:
        self.front = front
        self.broker = front.broker
        #: messages published and delivered, for /metrics
        self.counts = front.broker.stats.protocol("amqp")
        self.peer = peer
        self.peer_loopback = peer_loopback
        self.frame_max = front.frame_max
        self.channel_max = CHANNEL_MAX
        self.heartbeat = front.heartbeat
        self.decoder = codec.FrameDecoder(front.frame_max)
        self.state = AWAITING_HEADER
        self.outbox = bytearray()
        self.on_output: Callable[[], None] = lambda: None
        self.user: User | None = None
        self.username = ""
        self.vhost: VHost = front.broker.vhost()
        self.channels: dict[int, Channel] = {}
        self.client_properties: dict[str, Any] = {}
        #: a message of this batch went to durable storage: confirms wait for the store
        self.sync_needed = False
        self._after_sync: list[bytes] = []
        #: tickets handed to the adapter and not yet synced (see end_of_batch)
        self._unsynced = 0
        self._claimed = False
        self._counted = False
        self._verdicts: dict[tuple[str, str], bool] = {}
        self._verdicts_version = -1
        #: frames from a basic.publish on that arrived during a resource alarm: the adapter
        #: reads no more until the alarm clears and ``resume`` handles them
        self.held: list = []
        self._told_blocked = False

    # -- bytes in -----------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self.state >= CLOSING

    @property
    def closed(self) -> bool:
        return self.state == CLOSED

    def receive(self, data: bytes) -> None:
        """Handle bytes from the peer; protocol faults become connection.close."""
        if self.state == CLOSED:
            return
        try:
            frames = self.decoder.feed(data)
        except BadProtocolHeader:
            self.write(codec.PROTOCOL_HEADER)
            event(log, logging.INFO, "amqp bad protocol header", peer=self.peer)
            self.state = CLOSED
            return
        except AMQPError as exc:
            self._fail(exc)
            return
        if self.state == AWAITING_HEADER:
            self._start()
        self._handle(frames)

    def resume(self) -> None:
        """The resource alarm has cleared: handle the frames held back."""
        frames, self.held = self.held, []
        self._handle(frames)

    def _handle(self, frames: list) -> None:
        alarms = self.broker.alarms
        channels = self.channels
        index, count = 0, len(frames)
        while index < count:
            if self.state == CLOSED:
                return
            kind, number, payload = frames[index]
            index += 1
            kind_of = type(payload)
            try:
                if kind_of is codec.WholePublish or kind_of is codec.Publish:
                    if not alarms.cleared.is_set():
                        # a resource alarm: publishes wait, and so does everything after them
                        self.held = frames[index - 1 :]
                        return
                    channel = channels.get(number)
                    if channel is not None and not channel.closing and self.state == OPEN:
                        # the hot path: straight to the channel, a stream as a run
                        end = _run_end(frames, index, count)
                        if end > index:
                            channel.publish_run([f[2] for f in frames[index - 1 : end]])
                            index = end
                        else:
                            channel.method(payload)
                        continue
                self._frame(kind, number, payload)
            except ChannelError as exc:
                self._close_channel(number, exc)
            except AMQPError as exc:
                self._fail(exc)

    def _frame(self, kind: int, number: int, payload: Any) -> None:
        if kind == FRAME_HEARTBEAT:
            return
        if self.state == CLOSING:
            if kind == FRAME_METHOD and isinstance(
                payload, commands.Connection.CloseOk | commands.Connection.Close
            ):
                if isinstance(payload, commands.Connection.Close):
                    self.write(codec.method_frame(0, commands.Connection.CloseOk()))
                self.state = CLOSED
            return
        if number == 0:
            if kind != FRAME_METHOD:
                raise AMQPError(UNEXPECTED_FRAME, "content frame on channel 0")
            self._connection_method(payload)
            return
        if self.state != OPEN:
            raise AMQPError(COMMAND_INVALID, "channel frame before connection.open")
        channel = self.channels.get(number)
        if kind == FRAME_METHOD:
            if isinstance(payload, commands.Channel.Open):
                self._open_channel(number, payload)
                return
            if channel is None:
                raise AMQPError(CHANNEL_ERROR, f"expected 'channel.open' on channel {number}")
            if channel.closing:
                if isinstance(payload, commands.Channel.CloseOk):
                    del self.channels[number]
                elif isinstance(payload, commands.Channel.Close):
                    self.write(codec.method_frame(number, commands.Channel.CloseOk()))
                return
            if isinstance(payload, commands.Channel.Close):
                channel.close()
                del self.channels[number]
                self.write(codec.method_frame(number, commands.Channel.CloseOk()))
                return
            if isinstance(payload, commands.Channel.CloseOk):
                raise AMQPError(CHANNEL_ERROR, "channel.close-ok for an open channel")
            channel.method(payload)
        elif channel is None:
            raise AMQPError(CHANNEL_ERROR, f"content frame on channel {number}, which is not open")
        elif channel.closing:
            return
        elif kind == FRAME_HEADER:
            channel.header(payload)
        elif kind == FRAME_BODY:
            channel.body(payload)

    # -- connection negotiation ---------------------------------------------------------

    def _start(self) -> None:
        server_properties = {
            "product": "broker",
            "version": "0.1",
            "platform": f"Python {platform.python_version()}",
            "copyright": "",
            "information": "multi-protocol message broker",
            "capabilities": SERVER_CAPABILITIES,
            "cluster_name": "broker",
        }
        start = commands.Connection.Start(
            server_properties=server_properties,
            mechanisms="PLAIN AMQPLAIN",
            locales="en_US",
        )
        self.write(codec.method_frame(0, start))
        self.state = AWAITING_START_OK

    def _connection_method(self, method: Any) -> None:
        state = self.state
        if isinstance(method, commands.Connection.Close):
            self.write(codec.method_frame(0, commands.Connection.CloseOk()))
            self.state = CLOSED
            return
        if state == AWAITING_START_OK and isinstance(method, commands.Connection.StartOk):
            self._start_ok(method)
        elif state == AWAITING_TUNE_OK and isinstance(method, commands.Connection.TuneOk):
            self._tune_ok(method)
        elif state == AWAITING_OPEN and isinstance(method, commands.Connection.Open):
            self._open(method)
        elif isinstance(method, commands.Connection.CloseOk):
            raise AMQPError(COMMAND_INVALID, "connection.close-ok without connection.close")
        else:
            raise AMQPError(
                COMMAND_INVALID,
                f"{getattr(method, 'name', method)} not expected now",
                getattr(method, "index", 0),
            )

    def _start_ok(self, method: commands.Connection.StartOk) -> None:
        self.client_properties = method.client_properties or {}
        username, password = self._credentials(method)
        try:
            user = self.broker.users.authenticate(
                username, password, peer_loopback=self.peer_loopback
            )
        except AuthError as exc:
            event(log, logging.INFO, "amqp login refused", peer=self.peer, user=username)
            raise AMQPError(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism "
                f"{method.mechanism}. ({exc.reason})",
                method.index,
            ) from None
        if not self.broker.claim_connection(user.name):
            raise AMQPError(
                NOT_ALLOWED, f"connection limit of user '{user.name}' reached", method.index
            )
        self._claimed = True
        self.user = user
        self.username = user.name
        tune = commands.Connection.Tune(self.channel_max, self.frame_max, self.heartbeat)
        self.write(codec.method_frame(0, tune))
        self.state = AWAITING_TUNE_OK

    def _credentials(self, method: commands.Connection.StartOk) -> tuple[str, bytes | str]:
        response = method.response
        raw = response.encode() if isinstance(response, str) else bytes(response or b"")
        if method.mechanism == "PLAIN":
            parts = raw.split(b"\x00")
            if len(parts) != 3:
                raise AMQPError(ACCESS_REFUSED, "malformed PLAIN response", method.index)
            return parts[1].decode(errors="replace"), parts[2]
        if method.mechanism == "AMQPLAIN":
            table = codec.parse_field_table(raw)
            login, password = table.get("LOGIN", ""), table.get("PASSWORD", "")
            if isinstance(login, bytes):
                login = login.decode(errors="replace")
            return str(login), password if isinstance(password, bytes) else str(password)
        raise AMQPError(
            ACCESS_REFUSED, f"unsupported authentication mechanism {method.mechanism}", method.index
        )

    def _tune_ok(self, method: commands.Connection.TuneOk) -> None:
        frame_max = method.frame_max or self.frame_max
        if frame_max < codec.FRAME_MIN_SIZE or frame_max > self.frame_max:
            raise AMQPError(
                codec.SYNTAX_ERROR,
                f"frame_max {frame_max} outside {codec.FRAME_MIN_SIZE}..{self.frame_max}",
                method.index,
            )
        self.frame_max = frame_max
        self.decoder.frame_max = frame_max
        if method.channel_max:
            self.channel_max = min(method.channel_max, CHANNEL_MAX)
        self.heartbeat = method.heartbeat
        self.state = AWAITING_OPEN

    def _open(self, method: commands.Connection.Open) -> None:
        assert self.user is not None
        name = method.virtual_host or "/"
        try:
            vhost = self.broker.vhost(name)
        except NotFound:
            raise AMQPError(NOT_ALLOWED, f"vhost '{name}' not found", method.index) from None
        if not auth.has_vhost_access(self.user, name):
            raise AMQPError(
                NOT_ALLOWED,
                f"access to vhost '{name}' refused for user '{self.username}'",
                method.index,
            )
        self.vhost = vhost
        self.state = OPEN
        self.broker.stats.connected("amqp")
        self._counted = True
        self.front.connections.add(self)
        self.write(codec.method_frame(0, commands.Connection.OpenOk()))
        self.alarms_changed(self.front.blocked_reason)
        event(log, logging.DEBUG, "amqp connection open", peer=self.peer, user=self.username)

    # -- channels -----------------------------------------------------------------------

    def _open_channel(self, number: int, method: commands.Channel.Open) -> None:
        if number in self.channels:
            raise AMQPError(CHANNEL_ERROR, f"channel {number} is already open", method.index)
        if number > self.channel_max:
            raise AMQPError(
                NOT_ALLOWED, f"channel {number} over channel_max {self.channel_max}", method.index
            )
        self.channels[number] = Channel(self, number)
        self.write(codec.method_frame(number, commands.Channel.OpenOk()))

    def _close_channel(self, number: int, exc: ChannelError) -> None:
        """A channel exception: close the channel with the error, wait for close-ok."""
        channel = self.channels.get(number)
        if channel is None:
            return
        event(
            log, logging.INFO, "amqp channel error", peer=self.peer, code=exc.code, error=exc.text
        )
        channel.close()
        channel.closing = True
        self.write(codec.method_frame(number, exc.close_method(commands.Channel.Close)))

    # -- permissions --------------------------------------------------------------------

    def check(self, kind: str, resource: str, index: int) -> None:
        """RabbitMQ's configure/write/read check on a resource name (403 when refused).
        Verdicts are cached until the user database changes: publishers ask per message."""
        users = self.broker.users
        if self._verdicts_version != users.version:
            self._verdicts.clear()
            self._verdicts_version = users.version
            self.user = users.get(self.username)
        key = (kind, resource)
        allowed = self._verdicts.get(key)
        if allowed is None:
            user = self.user
            allowed = user is not None and auth.can(user, self.vhost.name, kind, resource)
            self._verdicts[key] = allowed
        if not allowed:
            what = "exchange" if kind != "configure" else "resource"
            raise ChannelError(
                ACCESS_REFUSED,
                f"access to {what} '{resource or 'amq.default'}' in vhost '{self.vhost.name}' "
                f"refused for user '{self.username}'",
                index,
            )

    def topic_allowed(self, key: str, action: str = "publish") -> bool:
        """The topic ACL on an amq.topic routing key (publish) or binding key (subscribe)."""
        acl = self.broker.acl
        if not acl:
            return True
        topic = key_to_mqtt(key) if action == "publish" else pattern_to_filter(key)
        return acl.check(self.username, "", topic, action)

    def alarms_changed(self, reason: str | None) -> None:
        """Tell a client that understands it that publishing is blocked, or no longer."""
        if not self.capability("connection.blocked") or self.state != OPEN:
            return
        if reason is not None and not self._told_blocked:
            self._told_blocked = True
            self.write(codec.method_frame(0, commands.Connection.Blocked(reason)))
        elif reason is None and self._told_blocked:
            self._told_blocked = False
            self.write(codec.method_frame(0, commands.Connection.Unblocked()))

    def capability(self, name: str) -> bool:
        capabilities = self.client_properties.get("capabilities") or {}
        return bool(capabilities.get(name))

    # -- bytes out ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        wake = not self.outbox
        self.outbox += data
        if wake:
            self.on_output()

    def write_parts(self, parts: list[bytes]) -> None:
        wake = not self.outbox
        outbox = self.outbox
        for part in parts:
            outbox += part
        if wake:
            self.on_output()

    def write_after_sync(self, data: bytes) -> None:
        """Output that must wait for this batch's stored messages to be durable (and, to
        keep its order, behind output already waiting for an earlier sync)."""
        if self.sync_needed or self._after_sync or self._unsynced:
            self._after_sync.append(data)
        else:
            self.write(data)

    def writable(self) -> bool:
        return len(self.outbox) <= OUTPUT_HIGH_WATER and self.state == OPEN

    def takes_at_once(self, size: int) -> bool:
        """Whether ``size`` bytes of deliveries may be queued in one go: the output is
        writable and they alone are within its high water (more is delivered one by one,
        each checked, so a run of big messages cannot swell the buffer past it)."""
        return size <= OUTPUT_HIGH_WATER and self.writable()

    def take_output(self) -> bytes:
        data = bytes(self.outbox)
        self.outbox.clear()
        return data

    def output_drained(self) -> None:
        """The adapter sent everything: consumers held back by the buffer may go on."""
        for channel in list(self.channels.values()):
            channel.dispatch()

    def end_of_batch(self) -> list[bytes] | None:
        """After the frames of one read: publisher confirms go out now, or, when they
        wait for the store, are returned as a ticket: the adapter syncs the store, then
        hands the ticket to ``synced``.  Tickets are released in order, so output after an
        unsynced one waits too (a later ``multiple`` ack must not cover earlier messages
        before they are durable)."""
        confirms: list[bytes] = []
        for channel in self.channels.values():
            if channel.confirms:
                confirms += channel.confirm_frames()
        if self.sync_needed or self._after_sync or self._unsynced:
            ticket, self._after_sync = self._after_sync + confirms, []
            self.sync_needed = False
            self._unsynced += 1
            return ticket
        if confirms:
            self.write_parts(confirms)
        return None

    def synced(self, ticket: list[bytes]) -> None:
        """The store is durable up to the batch the ticket was taken for: release it."""
        self._unsynced -= 1
        if ticket and self.state != CLOSED:
            self.write_parts(ticket)

    # -- ending -------------------------------------------------------------------------

    def _fail(self, exc: AMQPError) -> None:
        """A connection exception: connection.close with the reply code, then wait for
        close-ok (the adapter closes the socket after a timeout)."""
        event(
            log,
            logging.INFO,
            "amqp connection error",
            peer=self.peer,
            code=exc.code,
            error=exc.text,
        )
        if self.state == AWAITING_HEADER:
            self.state = CLOSED
            return
        self.write(codec.method_frame(0, exc.close_method(commands.Connection.Close)))
        # after a framing error the stream cannot be trusted: no waiting for close-ok
        self.state = CLOSED if exc.code == codec.FRAME_ERROR else CLOSING
        self.release()

    def shut_down(self, reason: str = "broker shutdown") -> None:
        """Server shutdown, or an administrator's close: connection.close 320
        CONNECTION_FORCED."""
        if self.state == OPEN:
            close = commands.Connection.Close(
                codec.CONNECTION_FORCED, f"CONNECTION_FORCED - {reason}", 0, 0
            )
            self.write(codec.method_frame(0, close))
            self.state = CLOSING
            self.release()

    def connection_lost(self) -> None:
        """The transport is gone; release everything.  Safe to call more than once."""
        self.state = CLOSED
        self.release()

    def release(self) -> None:
        """Close every channel (unacked deliveries return to their queues) and drop the
        connection's exclusive queues."""
        channels, self.channels = list(self.channels.values()), {}
        for channel in channels:
            channel.close()
        if self._counted:
            self._counted = False
            self.broker.stats.disconnected("amqp")
            self.vhost.delete_exclusive(self)
            self.front.connections.discard(self)
        if self._claimed:
            self._claimed = False
            self.broker.release_connection(self.username)


def _run_end(frames: list, index: int, count: int) -> int:
    """Where the run of whole publishes like ``frames[index - 1]`` (same channel,
    exchange, routing key, flags and property block) ends; ``index`` when that frame is no
    whole publish or none like it follows."""
    number, first = frames[index - 1][1], frames[index - 1][2]
    if type(first) is not codec.WholePublish:
        return index
    exchange, key, block = first.exchange, first.routing_key, first.properties
    mandatory = first.mandatory
    while index < count:
        _, channel, payload = frames[index]
        if (
            type(payload) is not codec.WholePublish
            or channel != number
            or payload.routing_key != key
            or payload.properties != block
            or payload.exchange != exchange
            or payload.mandatory != mandatory
        ):
            break
        index += 1
    return index
