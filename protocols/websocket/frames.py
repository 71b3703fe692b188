"""Frames of the native WebSocket protocol (SPEC "Where protocols meet", item 3), sans-I/O.

Every frame is one map.  ``broker.v1.json`` carries JSON text, where a body that is UTF-8
travels as a string and any other body as base64 text with ``"encoding": "base64"``;
``broker.v1.msgpack`` carries msgpack binary, where a body is binary as it is.  Both
subprotocols share everything else: a ``Codec`` turns bytes into a frame map and back, and
the helpers here turn frame fields into core properties and payloads and back.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import json
from typing import Any

import msgpack

from broker.message import EMPTY_PROPERTIES, Properties

JSON = "broker.v1.json"
MSGPACK = "broker.v1.msgpack"
SUBPROTOCOLS = (JSON, MSGPACK)

_STRING_PROPERTIES = frozenset(
    {
        "content_type",
        "content_encoding",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "type",
        "user_id",
        "app_id",
    }
)
_INTEGER_PROPERTIES = {"delivery_mode": (1, 2), "priority": (0, 255), "timestamp": (0, 2**63 - 1)}


class FrameError(Exception):
    """A frame that cannot be understood: answered with ``bad_request``, the connection
    stays open."""


class Codec:
    """One subprotocol's frame encoding."""

    name: str
    #: whether payloads travel as binary (msgpack) or as text with an encoding (JSON)
    binary: bool

    def decode(self, data: bytes | str) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self, frame: dict[str, Any]) -> bytes | str:
        raise NotImplementedError

    def plain_publish(self, data: bytes | str) -> tuple[str, bytes] | None:
        """(topic, payload) of a plain publish (``op``, ``topic`` and ``payload`` only) laid
        out as one ``learn_plain`` saw, read without decoding; None: decode it."""
        return None

    def learn_plain(self, data: bytes | str, frame: dict[str, Any]) -> None:
        """``data`` decoded to the plain publish ``frame``: its layout may be learned."""

    def message_frames(
        self, topic: str | None, properties: dict[str, Any], bodies: list[bytes]
    ) -> list[bytes | str]:
        """The delivery frames of messages that share topic and properties."""
        frames = []
        for body in bodies:
            frame: dict[str, Any] = {"op": "message"}
            if topic is not None:
                frame["topic"] = topic
            put_payload(frame, body, self.binary)
            frame["properties"] = properties
            frames.append(self.encode(frame))
        return frames


class JsonCodec(Codec):
    name = JSON
    binary = False

    def decode(self, data: bytes | str) -> dict[str, Any]:
        try:
            frame = json.loads(data)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise FrameError(f"malformed JSON: {exc}") from None
        return _map(frame)

    def encode(self, frame: dict[str, Any]) -> str:
        return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), default=_json_value)


class MsgpackCodec(Codec):
    """msgpack frames.  A publisher's stream of plain publishes repeats one layout (map
    header, op, topic, the payload key) before each payload: once one was decoded, the
    next are read by that prefix alone, as the MQTT decoder reads repeated packet heads.
    Delivery frames of a run are built around their payloads likewise.  Both hand-written
    paths are held against msgpack by the tests."""

    name = MSGPACK
    binary = True

    def __init__(self) -> None:
        self._packer = msgpack.Packer(use_bin_type=True, default=_msgpack_value)
        #: the learned prefix of a plain publish up to its payload, and that topic
        self._plain: tuple[bytes, str] | None = None
        #: the prefix with the bin header of the last payload size, and the frame's size
        self._sized: tuple[bytes, int] = (b"", -1)

    def decode(self, data: bytes | str) -> dict[str, Any]:
        if isinstance(data, str):
            raise FrameError("broker.v1.msgpack takes binary frames")
        try:
            frame = msgpack.unpackb(data, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
            raise FrameError(f"malformed msgpack: {exc}") from None
        return _map(frame)

    def encode(self, frame: dict[str, Any]) -> bytes:
        return self._packer.pack(frame)

    def plain_publish(self, data: bytes | str) -> tuple[str, bytes] | None:
        plain = self._plain
        if plain is None or type(data) is not bytes:
            return None
        head, size = self._sized
        if len(data) == size and data.startswith(head):  # a stream's payloads of one size
            return plain[1], data[len(head) :]
        prefix = plain[0]
        if not data.startswith(prefix):
            return None
        payload = _bin_value(data, len(prefix))
        if payload is None:
            return None
        self._sized = (data[: len(data) - len(payload)], len(data))
        return plain[1], payload

    def learn_plain(self, data: bytes | str, frame: dict[str, Any]) -> None:
        payload = frame.get("payload")
        if type(data) is not bytes or type(payload) is not bytes or len(frame) != 3:
            return
        value = _bin_header(len(payload)) + payload
        if data.endswith(value):  # the payload comes last: the rest is the prefix
            self._plain = (data[: len(data) - len(value)], frame["topic"])

    def message_frames(
        self, topic: str | None, properties: dict[str, Any], bodies: list[bytes]
    ) -> list[bytes | str]:
        pack = self._packer.pack
        head = [self._packer.pack_map_header(4 if topic is not None else 3)]
        head += [pack("op"), pack("message")]
        if topic is not None:
            head += [pack("topic"), pack(topic)]
        head.append(pack("payload"))
        before, after = b"".join(head), pack("properties") + pack(properties)
        size = len(bodies[0])
        if all(len(body) == size for body in bodies):
            before += _bin_header(size)
            return [before + body + after for body in bodies]
        return [b"".join((before, _bin_header(len(body)), body, after)) for body in bodies]


def _bin_header(size: int) -> bytes:
    """msgpack's bin 8/16/32 header for ``size`` bytes."""
    if size < 1 << 8:
        return bytes((0xC4, size))
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _bin_value(data: bytes, at: int) -> bytes | None:
    """The bytes of the bin value at ``at`` if it ends exactly where ``data`` does."""
    if at >= len(data):
        return None
    kind = data[at]
    width = 1 if kind == 0xC4 else 2 if kind == 0xC5 else 4 if kind == 0xC6 else 0
    if not width:
        return None
    start = at + 1 + width
    if start + int.from_bytes(data[at + 1 : start], "big") != len(data):
        return None
    return data[start:]


def codec_for(subprotocol: str | None) -> Codec:
    return MsgpackCodec() if subprotocol == MSGPACK else JsonCodec()


def _map(frame: Any) -> dict[str, Any]:
    if not isinstance(frame, dict):
        raise FrameError("a frame is one map")
    if not isinstance(frame.get("op"), str):
        raise FrameError("a frame needs an 'op' string")
    return frame


def _json_value(value: Any) -> Any:
    """JSON forms of header values JSON has no type for (AMQP field tables)."""
    if isinstance(value, bytes | bytearray):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    return _msgpack_value(value)


def _msgpack_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | msgpack.ExtType):
        return str(value)
    raise TypeError(f"no frame form for {type(value).__name__}")


# --- fields -> core ----------------------------------------------------------------------


def payload_of(frame: dict[str, Any]) -> bytes:
    """A publish frame's body: a string as UTF-8, base64 text with ``encoding`` base64,
    or (msgpack) binary as it is."""
    payload = frame.get("payload", b"")
    encoding = frame.get("encoding")
    if isinstance(payload, bytes):
        return payload
    if not isinstance(payload, str):
        raise FrameError("'payload' must be a string or binary")
    if encoding is None or encoding == "utf-8":
        return payload.encode()
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise FrameError("'payload' is not valid base64") from None
    raise FrameError(f"unknown payload encoding {encoding!r}")


def properties_of(frame: dict[str, Any]) -> dict[str, Any]:
    """A publish frame's ``properties`` (AMQP names), checked: what ``Properties`` takes."""
    given = frame.get("properties") or {}
    if not isinstance(given, dict):
        raise FrameError("'properties' must be a map")
    values: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name in _STRING_PROPERTIES:
            if not isinstance(value, str):
                raise FrameError(f"property '{name}' must be a string")
        elif name in _INTEGER_PROPERTIES:
            low, high = _INTEGER_PROPERTIES[name]
            if not _integer(value) or not low <= value <= high:
                raise FrameError(f"property '{name}' must be an integer in {low}..{high}")
        elif name == "headers":
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise FrameError("property 'headers' must be a map with string keys")
        else:
            raise FrameError(f"unknown property '{name}'")
        values[name] = value
    expiration = values.get("expiration")
    if expiration is not None and not expiration.isdigit():
        raise FrameError("property 'expiration' must be milliseconds as a string")
    return values


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- core -> fields ----------------------------------------------------------------------


def put_payload(frame: dict[str, Any], body: bytes, binary: bool) -> None:
    """Set a delivery frame's ``payload`` (and ``encoding`` when it is base64)."""
    if binary:
        frame["payload"] = body
        return
    try:
        frame["payload"] = body.decode()
    except UnicodeDecodeError:
        frame["payload"] = base64.b64encode(body).decode("ascii")
        frame["encoding"] = "base64"


def properties_frame(properties: Properties) -> dict[str, Any]:
    """The set properties of a message, by their AMQP names (``cluster_id`` is not one a
    client sets or sees)."""
    if properties is EMPTY_PROPERTIES:
        return {}
    values = properties.to_dict()
    values.pop("cluster_id", None)
    return values
