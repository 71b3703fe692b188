"""Virtual hosts made and removed at run time: the rules for their names, and the kv record
that keeps one (with its description and tags) across restarts even while it holds no
durable exchange or queue."""

from __future__ import annotations

import json
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.vhost import VHost

#: kv records "vhost/<name>", one per vhost created at run time
PREFIX = "vhost/"
#: AMQP's connection.open carries the vhost name as a short string
MAX_NAME_BYTES = 255
#: why the connections on a deleted vhost are closed (AMQP: connection.close 320)
DELETED_REASON = "vhost deleted"


def check_name(name: str) -> None:
    """Raise ValueError for a name no client could use."""
    if not name:
        raise ValueError("vhost name must not be empty")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ValueError(f"vhost name longer than {MAX_NAME_BYTES} bytes")
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise ValueError("vhost name must not contain control characters")


def encode(vhost: VHost) -> bytes:
    return json.dumps({"description": vhost.description, "tags": vhost.tags}).encode()


def apply(vhost: VHost, data: bytes) -> None:
    """Give a recovered vhost its stored description and tags."""
    record = json.loads(data)
    vhost.description = record.get("description", "")
    vhost.tags = list(record.get("tags", ()))
