"""MQTT reason codes the broker sends, with the reason strings MQTT 5 clients get beside
them (2.4, 3.x.2.2), and the MQTT 3.1.1 CONNACK return codes they correspond to."""

from __future__ import annotations

from protocols.mqtt import codec

# CONNACK return codes of MQTT 3.1.1 and their MQTT 5 reason codes.
UNACCEPTABLE_PROTOCOL = (0x01, 0x84)
IDENTIFIER_REJECTED = (0x02, 0x85)
BAD_CREDENTIALS = (0x04, 0x86)
NOT_AUTHORIZED = (0x05, 0x87)
BAD_AUTH_METHOD = (0x05, 0x8C)
QUOTA_EXCEEDED = (0x03, 0x97)  # 3.1.1: server unavailable

#: CONNECT errors the decoder finds that MQTT 3.1.1 answers with a CONNACK code.
CONNACK_FOR_ERROR = {
    codec.UNSUPPORTED_PROTOCOL_VERSION: UNACCEPTABLE_PROTOCOL[0],
    codec.CLIENT_ID_NOT_VALID: IDENTIFIER_REJECTED[0],
}

SUBACK_FAILURE = 0x80  # MQTT 3.1.1
DISCONNECT_WITH_WILL = 0x04
NO_SUBSCRIPTION_EXISTED = 0x11
NO_MATCHING_SUBSCRIBERS = 0x10
CONTINUE_AUTHENTICATION = 0x18
REAUTHENTICATE = 0x19
NOT_AUTHORIZED_5 = 0x87
SERVER_SHUTTING_DOWN = 0x8B
KEEP_ALIVE_TIMEOUT = 0x8D
ADMINISTRATIVE_ACTION = 0x98
SESSION_TAKEN_OVER = 0x8E
FILTER_INVALID = 0x8F
PACKET_ID_NOT_FOUND = 0x92
RECEIVE_MAXIMUM_EXCEEDED = 0x93
PAYLOAD_FORMAT_INVALID = 0x99

#: Reason strings of the acknowledgements that carry no more specific text.
TEXT = {
    NO_MATCHING_SUBSCRIBERS: "no matching subscribers",
    NO_SUBSCRIPTION_EXISTED: "no subscription existed",
    NOT_AUTHORIZED_5: "not authorized",
    FILTER_INVALID: "topic filter invalid",
    PACKET_ID_NOT_FOUND: "packet identifier not found",
    PAYLOAD_FORMAT_INVALID: "payload is not UTF-8",
    SERVER_SHUTTING_DOWN: "server shutting down",
    KEEP_ALIVE_TIMEOUT: "keep alive timeout",
    SESSION_TAKEN_OVER: "session taken over",
    ADMINISTRATIVE_ACTION: "closed by an administrator",
}
