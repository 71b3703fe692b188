"""The native WebSocket protocol's state machine (SPEC "Where protocols meet", item 3),
sans-I/O: whole frames in (``receive``), encoded frames out (``outbox``).

A connection authenticates once (HTTP Basic on the upgrade, an ``auth`` first frame, or
else the guest rules), then every frame is a request: ``op`` names it, an optional ``id``
asks for a reply (``ok`` with result fields, or ``error`` with a code; errors are sent
even without an id, so a client learns what went wrong).  Permissions (configure, write,
read per vhost) and topic ACLs are checked as the AMQP and MQTT front ends check them.

Subscriptions work as MQTT sessions do: one queue per connection bound to ``amq.topic``,
a binding per filter.  Queue consumers get deliveries under connection-wide delivery tags
until they ack or nack them; whatever is unacked when the connection closes goes back to
its queue.  The adapter (``server.py``) moves the outbox to the socket, awaits the store
for the replies held in ``held``, and calls ``output_drained`` when there is room again.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from broker import auth
from broker.core import Broker
from broker.errors import (
    AccessRefused,
    BrokerError,
    NotAllowed,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)
from broker.exchanges import EXCHANGE_TYPES
from broker.log import event
from broker.message import EMPTY_PROPERTIES, PERSISTENT, Message, Properties
from broker.queues import Queue
from broker.topics import (
    TOPIC_EXCHANGE,
    filter_to_pattern,
    key_to_mqtt,
    mqtt_to_key,
    pattern_to_filter,
)
from protocols.websocket.consumers import MAX_QUEUED, QueueConsumer, SubscriptionConsumer
from protocols.websocket.frames import (
    Codec,
    FrameError,
    payload_of,
    properties_frame,
    properties_of,
    put_payload,
)

log = logging.getLogger("broker.websocket")

BAD_REQUEST = "bad_request"
ACCESS_REFUSED = "access_refused"
NOT_FOUND = "not_found"
PRECONDITION_FAILED = "precondition_failed"
INTERNAL = "internal"

#: The core's refusals as error codes.
_CORE_CODES: dict[type[BrokerError], str] = {
    AccessRefused: ACCESS_REFUSED,
    ResourceLocked: ACCESS_REFUSED,
    NotFound: NOT_FOUND,
    PreconditionFailed: PRECONDITION_FAILED,
    NotAllowed: PRECONDITION_FAILED,
}

#: Bytes waiting for the client beyond which consumers take no more deliveries and the
#: reader takes no more requests (the outbox is bounded by this plus one frame's worth).
OUTPUT_HIGH_WATER = 1 << 20
#: WebSocket close code for a refused authentication (RFC 6455 7.4.1, policy violation).
POLICY_VIOLATION = 1008
#: WebSocket close code when the server ends the connection (RFC 6455 7.4.1).
GOING_AWAY = 1001
#: The largest prefetch a consumer may ask for.
MAX_PREFETCH = 65535
#: Topics a connection remembers as checked for publishing.
PUBLISH_KEYS_CACHED = 256
#: The fields of a plain publish: QoS 0, no id, no properties, not retained.
_PLAIN_PUBLISH = frozenset({"op", "topic", "payload", "encoding"})


class Refused(Exception):
    """A request refused with an error code; the connection carries on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Op = Callable[[dict[str, Any], Any], dict[str, Any] | None]


class NativeConnection:
    """One client of the native protocol, from the upgrade to the close."""

    def __init__(
        self,
        broker: Broker,
        codec: Codec,
        *,
        peer: str,
        peer_loopback: bool,
        on_output: Callable[[], None] = lambda: None,
    ) -> None:
        self.broker = broker
        self.codec = codec
        self.peer = peer
        self.peer_loopback = peer_loopback
        self.vhost = broker.vhost()
        self._counts = broker.stats.protocol("websocket")
        #: called whenever the outbox (or ``held``) gets something
        self.on_output = on_output
        self.outbox: deque[bytes | str] = deque()
        self.outbox_bytes = 0
        #: replies to publishes that must wait for the store's next sync
        self.held: list[bytes | str] = []
        self.user: auth.User | None = None
        self.username = ""
        #: (code, reason) once the connection must close after its outbox is sent
        self.closing: tuple[int, str] | None = None
        self.closed = False
        self._verdicts: dict[tuple[str, str], bool] = {}
        self._verdicts_version = -1
        #: topics this connection may publish to, with their routing keys (cleared with
        #: the verdicts: a publisher sends to the same few topics over and over)
        self._publish_keys: dict[str, str] = {}
        self._consumers: dict[str, QueueConsumer] = {}
        self._tags: dict[int, tuple[QueueConsumer, int]] = {}
        self._next_tag = 1
        #: subscription filter -> ACL verdict ("allow", or "filter": checked per delivery)
        self._subscriptions: dict[str, str] = {}
        self._filtered = False
        self._subscription_queue: Queue | None = None
        self._subscriber = SubscriptionConsumer(self)
        #: work that must follow the reply now being made (deliveries after the ``ok``)
        self._after: list[Callable[[], None]] = []
        self._ops: dict[str, Op] = {
            "auth": self._reauth,
            "ping": lambda frame, request_id: {},
            "publish": self._publish,
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "consume": self._consume,
            "cancel": self._cancel,
            "ack": self._ack,
            "nack": self._nack,
            "declare": self._declare,
            "bind": partial(self._bind, unbind=False),
            "unbind": partial(self._bind, unbind=True),
        }

    # --- authentication ----------------------------------------------------------------

    def authenticate_basic(self, authorization: str) -> None:
        """HTTP Basic credentials from the upgrade request."""
        credentials = basic_credentials(authorization)
        if credentials is None:
            self._refuse_login(None, "malformed Authorization header", None)
        else:
            self._login(*credentials, request_id=None)

    def _login(self, username: str | None, password: str | None, request_id: Any) -> bool:
        try:
            user = self.broker.users.authenticate(
                username, password, peer_loopback=self.peer_loopback
            )
        except auth.AuthError as exc:
            self._refuse_login(request_id, f"authentication failed: {exc.reason}", username)
            return False
        if not self.broker.claim_connection(user.name):
            self._refuse_login(request_id, "too many connections for the user", user.name)
            return False
        self.user = user
        self.username = user.name
        self.broker.stats.connected("websocket")
        return True

    def _refuse_login(self, request_id: Any, why: str, username: str | None) -> None:
        self._error(request_id, ACCESS_REFUSED, why)
        self.closing = (POLICY_VIOLATION, "authentication failed")
        event(
            log, logging.INFO, "websocket login refused", peer=self.peer, user=username, reason=why
        )

    def shut_down(self, reason: str) -> None:
        """Close once the outbox is sent (the management API closing the connection)."""
        if self.closing is None:
            self.closing = (GOING_AWAY, reason)
            self.on_output()

    def describe(self) -> dict[str, str | None]:
        """The connection as the management API lists it."""
        return {"user": self.username or None, "vhost": self.vhost.name, "client_id": None}

    def _first_auth(self, frame: dict[str, Any], request_id: Any) -> None:
        username = _string(frame, "username", None)
        password = _string(frame, "password", None)
        if self._login(username, password, request_id):
            self._ok(request_id, {"user": self.username})

    def _reauth(self, frame: dict[str, Any], request_id: Any) -> dict[str, Any]:
        raise Refused(PRECONDITION_FAILED, "already authenticated")

    # --- requests ----------------------------------------------------------------------

    def receive(self, data: bytes | str) -> None:
        """Handle one whole WebSocket message (one frame)."""
        self.receive_many([data])

    def receive_many(self, messages: list[bytes | str]) -> None:
        """Handle the messages one read brought, in order.  Plain publishes (a topic and a
        payload, nothing else) to one topic in a row are routed as one run, as an MQTT
        publisher's stream is.  Permission changes apply from the next read on."""
        run: list[Message] = []
        self._verdicts_current()
        plain_publish = self.codec.plain_publish
        for data in messages:
            if self.closing is not None or self.closed:
                break
            known = plain_publish(data) if self.user is not None else None
            if known is not None:  # laid out as the last plain publish: no decoding
                topic, body = known
                key = self._publish_keys.get(topic)
                if key is not None:
                    if run and run[0].routing_key != key:
                        run = self._route(run)
                    run.append(self._topic_message(topic, key, body))
                    continue
            try:
                frame = self.codec.decode(data)
            except FrameError as exc:
                run = self._route(run)
                self._error(None, BAD_REQUEST, str(exc))
                continue
            if (
                self.user is not None
                and frame.keys() <= _PLAIN_PUBLISH
                and frame["op"] == "publish"
                and type(frame.get("topic")) is str
            ):
                try:
                    message = self._plain_message(frame)
                except Refused as refused:
                    run = self._route(run)
                    self._error(None, refused.code, refused.message)
                    continue
                self.codec.learn_plain(data, frame)
                if run and run[0].routing_key != message.routing_key:
                    run = self._route(run)
                run.append(message)
                continue
            run = self._route(run)
            self._request(frame)
        self._route(run)

    def _plain_message(self, frame: dict[str, Any]) -> Message:
        topic = frame["topic"]
        body = frame.get("payload")
        if type(body) is not bytes or "encoding" in frame:
            try:
                body = payload_of(frame)
            except FrameError as exc:
                raise Refused(BAD_REQUEST, str(exc)) from None
        key = self._publish_keys.get(topic) or self._topic_key(topic)
        return self._topic_message(topic, key, body)

    def _topic_message(self, topic: str, key: str, body: bytes) -> Message:
        return Message(
            TOPIC_EXCHANGE, key, body, EMPTY_PROPERTIES, None, self, self.username, None, topic
        )

    def _route(self, run: list[Message]) -> list[Message]:
        """Route a run of plain publishes; the new, empty run."""
        if run:
            try:
                self.vhost.publish_many(run)
            except BrokerError as exc:
                self._error(None, _CORE_CODES.get(type(exc), INTERNAL), exc.message)
            self._counts.messages_in += len(run)
            return []
        return run

    def _request(self, frame: dict[str, Any]) -> None:
        """Any frame but a plain publish: a request with an optional id."""
        request_id = frame.get("id")
        if request_id is not None and not _valid_id(request_id):
            self._error(None, BAD_REQUEST, "'id' must be an integer or a string")
            return
        op = frame["op"]
        if self.user is None:
            if op == "auth":
                try:
                    self._first_auth(frame, request_id)
                except Refused as refused:
                    self._refuse_login(request_id, refused.message, None)
                return
            if not self._login(None, None, None):
                return
        handler = self._ops.get(op)
        if handler is None:
            self._error(request_id, BAD_REQUEST, f"unknown op {op!r}")
            return
        try:
            result = handler(frame, request_id)
        except Refused as refused:
            self._error(request_id, refused.code, refused.message)
        except BrokerError as exc:
            self._error(request_id, _CORE_CODES.get(type(exc), INTERNAL), exc.message)
        except Exception:
            log.exception("websocket request failed", extra={"fields": {"op": op}})
            self._error(request_id, INTERNAL, "internal error")
        else:
            if result is not None:
                self._ok(request_id, result)
        after, self._after = self._after, []
        for step in after:
            step()

    def _ok(self, request_id: Any, fields: dict[str, Any]) -> None:
        if request_id is not None:
            self.send({"op": "ok", "id": request_id, **fields})

    def _error(self, request_id: Any, code: str, message: str) -> None:
        frame: dict[str, Any] = {"op": "error", "code": code, "message": message}
        if request_id is not None:
            frame["id"] = request_id
        self.send(frame)

    # --- publish -----------------------------------------------------------------------

    def _publish(self, frame: dict[str, Any], request_id: Any) -> dict[str, Any] | None:
        qos = _integer(frame, "qos", 0, 0, 1)
        retain = _boolean(frame, "retain", False)
        try:
            values = properties_of(frame)
            body = payload_of(frame)
        except FrameError as exc:
            raise Refused(BAD_REQUEST, str(exc)) from None
        topic = _string(frame, "topic", None)
        if topic is not None:
            exchange, routing_key = TOPIC_EXCHANGE, self._topic_key(topic)
        else:
            exchange = _required_string(frame, "exchange")
            routing_key = _string(frame, "routing_key", "")
            topic = key_to_mqtt(routing_key) if exchange == TOPIC_EXCHANGE else None
            self._check_publish(exchange, topic)
        if retain and topic is None:
            raise Refused(BAD_REQUEST, "only a topic publish can be retained")
        if not values:  # the usual publish: shared properties
            properties = PERSISTENT if qos else EMPTY_PROPERTIES
            expires_at = None
        else:
            user_id = values.get("user_id")
            if user_id is not None and user_id != self.username:
                raise Refused(PRECONDITION_FAILED, "user_id is not the authenticated user")
            if qos and "delivery_mode" not in values:
                values["delivery_mode"] = 2
            properties = Properties(**values)
            expiration = values.get("expiration")
            expires_at = None if expiration is None else time.time() + int(expiration) / 1000
        message = Message(
            exchange,
            routing_key,
            body,
            properties,
            expires_at,
            self,
            self.username,
            {"retain": True} if retain else None,
            topic,
        )
        if retain:
            assert topic is not None
            self.broker.retained.set(topic, message)
        result = self.vhost.publish(message)
        self._counts.messages_in += 1
        reply = {"routed": result.routed}
        if qos and request_id is not None and (result.stored or retain):
            self.held.append(self.codec.encode({"op": "ok", "id": request_id, **reply}))
            self.on_output()
            return None
        return reply

    def _topic_key(self, topic: str) -> str:
        """The routing key of a topic the connection may publish to on amq.topic."""
        self._verdicts_current()
        key = self._publish_keys.get(topic)
        if key is None:
            if not valid_topic_name(topic):
                raise Refused(BAD_REQUEST, f"invalid topic {topic!r}")
            self._check_publish(TOPIC_EXCHANGE, topic)
            if len(self._publish_keys) >= PUBLISH_KEYS_CACHED:
                self._publish_keys.clear()
            key = self._publish_keys[topic] = mqtt_to_key(topic)
        return key

    def _check_publish(self, exchange_name: str, topic: str | None) -> None:
        exchange = self.vhost.exchange(exchange_name)
        if exchange.internal:
            raise Refused(ACCESS_REFUSED, f"cannot publish to internal exchange '{exchange_name}'")
        self._check("write", exchange_name)
        if topic is not None and not self._acl_allows(topic, "publish"):
            raise Refused(ACCESS_REFUSED, f"publish to topic '{topic}' refused")

    # --- subscriptions -----------------------------------------------------------------

    def _subscribe(self, frame: dict[str, Any], request_id: Any) -> dict[str, Any]:
        topic_filter = _required_string(frame, "topic")
        qos = _integer(frame, "qos", 0, 0, 1)
        if not valid_topic_filter(topic_filter) or topic_filter.startswith("$share/"):
            raise Refused(BAD_REQUEST, f"invalid topic filter {topic_filter!r}")
        self._check("read", TOPIC_EXCHANGE)
        acl = self.broker.acl
        verdict = acl.subscription(self.username, "", topic_filter) if acl else "allow"
        if verdict == "deny":
            raise Refused(ACCESS_REFUSED, f"subscription to '{topic_filter}' refused")
        queue = self._subscription_queue
        if queue is None:  # (an empty queue is falsy)
            queue = self._open_subscription_queue()
        if topic_filter not in self._subscriptions:
            self.vhost.bind(queue, TOPIC_EXCHANGE, filter_to_pattern(topic_filter), None)
        self._subscriptions[topic_filter] = verdict
        self._filtered = "filter" in self._subscriptions.values()
        self._after.append(partial(self._send_retained, topic_filter, verdict == "filter"))
        return {"topic": topic_filter, "qos": qos}

    def _open_subscription_queue(self) -> Queue:
        """The connection's own queue, made on its first subscription."""
        queue = self.vhost.declare_queue(
            f"ws.subscriptions.{uuid.uuid4().hex}",
            durable=False,
            exclusive_owner=self,
            arguments={"x-max-length": MAX_QUEUED},
        )
        self._subscription_queue = queue
        queue.add_consumer(self._subscriber)
        return queue

    def _send_retained(self, topic_filter: str, filtered: bool) -> None:
        for topic, message in self.broker.retained.match(topic_filter):
            if not filtered or self._acl_allows(topic, "subscribe"):
                frame = self._message_frame(message, topic)
                frame["retain"] = True
                self.send(frame)

    def _unsubscribe(self, frame: dict[str, Any], request_id: Any) -> dict[str, Any]:
        topic_filter = _required_string(frame, "topic")
        if self._subscriptions.pop(topic_filter, None) is not None:
            pattern = filter_to_pattern(topic_filter)
            assert self._subscription_queue is not None
            self.vhost.unbind(self._subscription_queue, TOPIC_EXCHANGE, pattern, None)
            self._filtered = "filter" in self._subscriptions.values()
        return {"topic": topic_filter}

    def deliver_subscribed(self, messages: list[Message]) -> None:
        """Messages for the subscriptions (a run shares topic and properties): one frame
        per message and subprotocol, shared by every subscriber through the message's
        cache."""
        first = messages[0]
        if first.expires_at is not None and first.expired():
            return
        topic = first.topic or key_to_mqtt(first.routing_key)
        if self._filtered and not self._acl_allows(topic, "subscribe"):
            return
        cache = first.cache
        if cache is None:
            cache = first.cache = {}
        key = (self.codec.name, len(messages))  # the first message of a run stands for it
        frames = cache.get(key)
        if frames is None:
            properties = properties_frame(first.properties)
            bodies = [message.body for message in messages]
            frames = cache[key] = self.codec.message_frames(topic, properties, bodies)
        self._put_many(frames)
        self._counts.messages_out += len(frames)

    def subscriptions_gone(self) -> None:
        """The subscription queue was deleted from outside (management)."""
        self._subscription_queue = None
        for topic_filter in list(self._subscriptions):
            self.send({"op": "cancelled", "topic": topic_filter})
        self._subscriptions.clear()
        self._filtered = False

    def _message_frame(self, message: Message, topic: str | None) -> dict[str, Any]:
        """A delivery; ``topic`` only for messages that have one (published to a topic or
        through amq.topic)."""
        frame: dict[str, Any] = {"op": "message"}
        if topic is not None:
            frame["topic"] = topic
        put_payload(frame, message.body, self.codec.binary)
        frame["properties"] = properties_frame(message.properties)
        return frame

    # --- queue consumers ---------------------------------------------------------------

    def _consume(self, frame: dict[str, Any], request_id: Any) -> dict[str, Any]:
        name = _required_string(frame, "queue")
        prefetch = _integer(frame, "prefetch", 0, 0, MAX_PREFETCH)
        self._check("read", name)
        queue = self._usable_queue(name)
        if name in self._consumers:
            raise Refused(PRECONDITION_FAILED, f"already consuming from queue '{name}'")
        consumer = QueueConsumer(self, queue, prefetch)
        self._consumers[name] = consumer
        self._after.append(partial(queue.add_consumer, consumer))
        return {"queue": name}

    def _cancel(self, frame: dict[str, Any], request_id: Any) -> dict[str, Any]:
        """Stop consuming; deliveries still unacked can be acked or nacked later."""
        name = _required_string(frame, "queue")
        consumer = self._consumers.pop(name, None)
        if consumer is None:
            raise Refused(NOT_FOUND, f"not consuming from queue '{name}'")
        consumer.queue.remove_consumer(consumer, requeue=False)
        return {"queue": name}

    def deliver_from_queue(
        self, consumer: QueueConsumer, message: Message, seq: int, redelivered: bool
    ) -> None:
        tag = self._next_tag
        self._next_tag = tag + 1
        self._tags[tag] = (consumer, seq)
        topic = message.topic
        if topic is None and message.exchange == TOPIC_EXCHANGE:
            topic = key_to_mqtt(message.routing_key)
        frame = self._message_frame(message, topic)
        frame["queue"] = consumer.queue.name
        frame["exchange"] = message.exchange
        frame["routing_key"] = message.routing_key
        frame["delivery_tag"] = tag
        frame["redelivered"] = redelivered
        self.send(frame)
        self._counts.messages_out += 1

    def consumer_gone(self, consumer: QueueConsumer) -> None:
        """The consumer's queue was deleted: its deliveries went with it."""
        name = consumer.queue.name
        if self._consumers.get(name) is consumer:
            del self._consumers[name]
        for tag in [t for t, (c, _) in self._tags.items() if c is consumer]:
            del self._tags[tag]
        if not self.closed:
            self.send({"op": "cancelled", "queue": name})

    def _ack(self, frame: dict[str, Any], request_id: Any) -> dict[str, Any]:
        consumer, seq = self._delivery(frame)
        consumer.queue.ack(seq)
        consumer.queue.dispatch()
        return {}

    def _nack(self, frame: dict[str, Any], request_id: Any) -> dict[str, Any]:
        requeue = _boolean(frame, "requeue", True)
        consumer, seq = self._delivery(frame)
        consumer.queue.reject(seq, requeue)
        consumer.queue.dispatch()
        return {}

    def _delivery(self, frame: dict[str, Any]) -> tuple[QueueConsumer, int]:
        tag = _integer(frame, "delivery_tag", None, 1, None)
        delivery = self._tags.pop(tag, None)
        if delivery is None:
            raise Refused(PRECONDITION_FAILED, f"unknown delivery tag {tag}")
        delivery[0].unacked -= 1
        return delivery

    # --- declare and bind --------------------------------------------------------------

    def _declare(self, frame: dict[str, Any], request_id: Any) -> dict[str, Any]:
        passive = _boolean(frame, "passive", False)
        durable = _boolean(frame, "durable", False)
        auto_delete = _boolean(frame, "auto_delete", False)
        arguments = _mapping(frame, "arguments")
        if "queue" in frame:
            given = _string(frame, "queue", "")
            name = given or f"amq.gen-{uuid.uuid4().hex}"
            if not passive:
                self._check("configure", name)
            exclusive = _boolean(frame, "exclusive", False)
            queue = self.vhost.declare_queue(
                name,
                durable=durable,
                exclusive_owner=self if exclusive else None,
                auto_delete=auto_delete,
                arguments=arguments,
                passive=passive,
                owner=self,
                reserved=not given,
            )
            return {"queue": name, "messages": len(queue), "consumers": len(queue.consumers)}
        if "exchange" in frame:
            name = _required_string(frame, "exchange")
            kind = _string(frame, "type", "direct")
            if not passive:
                if kind not in EXCHANGE_TYPES:
                    raise Refused(BAD_REQUEST, f"unknown exchange type {kind!r}")
                self._check("configure", name)
                alternate = arguments.get("alternate-exchange")
                if alternate is not None:
                    self._check("write", str(alternate))
            self.vhost.declare_exchange(
                name,
                kind,
                durable=durable,
                auto_delete=auto_delete,
                internal=_boolean(frame, "internal", False),
                arguments=arguments,
                passive=passive,
            )
            return {"exchange": name}
        raise Refused(BAD_REQUEST, "declare needs 'queue' or 'exchange'")

    def _bind(self, frame: dict[str, Any], request_id: Any, *, unbind: bool) -> dict[str, Any]:
        source = _required_string(frame, "source")
        routing_key = _string(frame, "routing_key", "")
        arguments = _mapping(frame, "arguments")
        if "queue" in frame:
            name = _required_string(frame, "queue")
        else:
            name = _required_string(frame, "exchange")
        self._check("write", name)
        self._check("read", source)
        if (
            not unbind
            and source == TOPIC_EXCHANGE
            and not self._acl_allows(pattern_to_filter(routing_key), "subscribe")
        ):
            raise Refused(ACCESS_REFUSED, f"binding '{routing_key}' refused")
        destination = self._usable_queue(name) if "queue" in frame else self.vhost.exchange(name)
        if unbind:
            self.vhost.unbind(destination, source, routing_key, arguments)
        else:
            self.vhost.bind(destination, source, routing_key, arguments)
        return {}

    def _usable_queue(self, name: str) -> Queue:
        queue = self.vhost.queue(name)
        if queue.exclusive_owner is not None and queue.exclusive_owner is not self:
            raise Refused(ACCESS_REFUSED, f"queue '{name}' is exclusive to another connection")
        return queue

    # --- permissions -------------------------------------------------------------------

    def _check(self, kind: str, resource: str) -> None:
        """RabbitMQ's configure/write/read check; verdicts are cached until the user
        database changes (a publisher asks per message)."""
        self._verdicts_current()
        allowed = self._verdicts.get((kind, resource))
        if allowed is None:
            user = self.user
            allowed = user is not None and auth.can(user, self.vhost.name, kind, resource)
            self._verdicts[kind, resource] = allowed
        if not allowed:
            raise Refused(
                ACCESS_REFUSED,
                f"{kind} access to '{resource or 'amq.default'}' in vhost '{self.vhost.name}' "
                f"refused for user '{self.username}'",
            )

    def _verdicts_current(self) -> None:
        """Forget cached permission verdicts once the user database has changed."""
        users = self.broker.users
        if self._verdicts_version != users.version:
            self._verdicts.clear()
            self._publish_keys.clear()
            self._verdicts_version = users.version
            self.user = users.get(self.username)

    def _acl_allows(self, topic: str, action: str) -> bool:
        acl = self.broker.acl
        return not acl or acl.check(self.username, "", topic, action)

    # --- output ------------------------------------------------------------------------

    def send(self, frame: dict[str, Any]) -> None:
        self._put(self.codec.encode(frame))

    def _put(self, data: bytes | str) -> None:
        self._put_many([data])

    def _put_many(self, frames: list[bytes | str]) -> None:
        wake = not self.outbox  # else the adapter has been told already
        self.outbox.extend(frames)
        self.outbox_bytes += sum(map(len, frames))
        if wake:
            self.on_output()

    def has_room(self) -> bool:
        """Whether consumers may add deliveries to the outbox."""
        return not self.closed and self.outbox_bytes < OUTPUT_HIGH_WATER

    def take_output(self) -> list[bytes | str]:
        """Every encoded frame for the client, taken off the outbox (sent in one write)."""
        frames = list(self.outbox)
        self.outbox.clear()
        self.outbox_bytes = 0
        return frames

    def output_drained(self) -> None:
        """The outbox is empty: let the queues deliver again."""
        if self._subscription_queue is not None:
            self._subscription_queue.dispatch()
        for consumer in list(self._consumers.values()):
            consumer.queue.dispatch()

    def release_held(self, count: int) -> None:
        """The store has synced what the first ``count`` held replies confirm."""
        released, self.held = self.held[:count], self.held[count:]
        for data in released:
            self._put(data)

    # --- close -------------------------------------------------------------------------

    def close(self) -> None:
        """The connection is gone: unacked deliveries back to their queues, consumers and
        exclusive queues (the subscription queue among them) removed."""
        if self.closed:
            return
        self.closed = True
        for consumer in self._consumers.values():
            consumer.queue.remove_consumer(consumer, requeue=False)
        self._consumers.clear()
        unacked: dict[Queue, list[int]] = {}
        for consumer, seq in self._tags.values():
            unacked.setdefault(consumer.queue, []).append(seq)
        self._tags.clear()
        for queue, seqs in unacked.items():
            if not queue.deleted:
                queue.requeue(seqs)
        if self._subscription_queue is not None:
            self._subscription_queue.remove_consumer(self._subscriber, requeue=False)
        self.vhost.delete_exclusive(self)
        if self.user is not None:
            self.broker.release_connection(self.user.name)
            self.broker.stats.disconnected("websocket")


# --- helpers -------------------------------------------------------------------------------


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(username, password) from an HTTP Basic ``Authorization`` header, or None."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = text.partition(":")
    return (username, password) if colon else None


def valid_topic_name(topic: str) -> bool:
    """A topic to publish to: non-empty, no wildcard, no U+0000 (as MQTT)."""
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic


def valid_topic_filter(topic_filter: str) -> bool:
    """An MQTT filter: '+' fills a whole level, '#' a whole level and only the last."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _string(frame: dict[str, Any], name: str, default: str | None) -> Any:
    value = frame.get(name, default)
    if value is not None and not isinstance(value, str):
        raise Refused(BAD_REQUEST, f"'{name}' must be a string")
    return value


def _required_string(frame: dict[str, Any], name: str) -> str:
    value = _string(frame, name, None)
    if value is None:
        raise Refused(BAD_REQUEST, f"'{name}' is required")
    return value


def _boolean(frame: dict[str, Any], name: str, default: bool) -> bool:
    value = frame.get(name, default)
    if not isinstance(value, bool):
        raise Refused(BAD_REQUEST, f"'{name}' must be true or false")
    return value


def _integer(
    frame: dict[str, Any], name: str, default: int | None, low: int, high: int | None
) -> int:
    value = frame.get(name, default)
    if value is None:
        raise Refused(BAD_REQUEST, f"'{name}' is required")
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise Refused(BAD_REQUEST, f"'{name}' must be an integer {bounds}")
    return value


def _mapping(frame: dict[str, Any], name: str) -> dict[str, Any]:
    value = frame.get(name) or {}
    if not isinstance(value, dict):
        raise Refused(BAD_REQUEST, f"'{name}' must be a map")
    return value
