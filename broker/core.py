"""The broker core: vhosts, retained values, users and stored sessions over one store.

Front ends receive a ``Broker`` and use only it (and the objects it hands out): publish
through a vhost, declare queues, consume, keep retained values and session blobs.  The
runtime creates it, recovers it from the store, and runs its housekeeping.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

import trio

from broker import vhosts as vhost_records
from broker.alarms import Alarms, ResourceMonitor
from broker.connections import ConnectionRegistry
from broker.errors import NotAllowed, NotFound
from broker.flow import FlowControl
from broker.message import Message, decode_message
from broker.rates import Rates
from broker.retained import RetainedStore
from broker.stats import Stats
from broker.vhost import VHost

if TYPE_CHECKING:
    from broker.acl import TopicACL
    from broker.auth import UserDB
    from broker.store.base import Snapshot, Store

DEFAULT_VHOST = "/"


class Broker:
    def __init__(self, store: Store, users: UserDB, acl: TopicACL) -> None:
        self.store = store
        self.users = users
        self.acl = acl
        self.flow = FlowControl()
        self.vhosts: dict[str, VHost] = {DEFAULT_VHOST: VHost(DEFAULT_VHOST, store, self.flow)}
        self.retained = RetainedStore(store)
        self.sessions: dict[str, bytes] = {}
        #: the store's key-value records as loaded at start, until a front end takes them
        self._loaded_kv: dict[str, bytes] = {}
        self.stats = Stats()
        #: client connections of every protocol (the management API lists and closes them)
        self.connections = ConnectionRegistry()
        self.rates = Rates(self.vhosts)
        self.started = time.time()
        #: connections one user may hold across all protocols (0 = unlimited)
        self.max_connections_per_user = 0
        self._user_connections: Counter[str] = Counter()
        self.alarms = Alarms()
        #: measures memory and disk for the alarms each second (the runtime sets it)
        self.monitor: ResourceMonitor | None = None

    def vhost(self, name: str = DEFAULT_VHOST) -> VHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            raise NotFound(f"no vhost '{name}'")
        return vhost

    def add_vhost(
        self, name: str, *, description: str | None = None, tags: list[str] | None = None
    ) -> bool:
        """Create a vhost (or only update its description and tags: idempotent) and keep
        it in the store; True when it is new.  Raises ValueError for an unusable name."""
        vhost_records.check_name(name)
        vhost = self.vhosts.get(name)
        created = vhost is None
        if vhost is None:
            vhost = self.vhosts[name] = VHost(name, self.store, self.flow)
        if description is not None:
            vhost.description = description
        if tags is not None:
            vhost.tags = list(tags)
        self.store.put_kv(vhost_records.PREFIX + name, vhost_records.encode(vhost))
        return created

    def delete_vhost(self, name: str) -> None:
        """Delete a vhost with everything in it: its client connections are closed (AMQP
        connection.close 320), its queues with their messages and its exchanges leave the
        store, and every user's permissions on it go.  The default vhost stays: the MQTT,
        XMPP and WebSocket front ends live in it (NotAllowed)."""
        if name == DEFAULT_VHOST:
            raise NotAllowed(f"the default vhost '{name}' cannot be deleted")
        vhost = self.vhost(name)
        for connection in self.connections:
            if connection.describe().get("vhost") == name:
                connection.close(vhost_records.DELETED_REASON)
        vhost.delete_contents()
        for user in self.users.list():
            if name in user.permissions:
                self.users.clear_permissions(user.name, name)
        del self.vhosts[name]
        self.store.put_kv(vhost_records.PREFIX + name, None)

    def claim_connection(self, user: str) -> bool:
        """Count a new authenticated connection of ``user``; False (and not counted) when
        the user already holds ``max_connections_per_user``."""
        limit = self.max_connections_per_user
        if limit and self._user_connections[user] >= limit:
            return False
        self._user_connections[user] += 1
        return True

    def release_connection(self, user: str) -> None:
        count = self._user_connections[user] - 1
        if count > 0:
            self._user_connections[user] = count
        else:
            del self._user_connections[user]

    def save_session(self, key: str, blob: bytes | None) -> None:
        """Keep (or with None drop) a front end's durable session state."""
        if blob is None:
            self.sessions.pop(key, None)
        else:
            self.sessions[key] = blob
        self.store.put_session(key, blob)

    def restore(self, snapshot: Snapshot) -> None:
        """Rebuild everything durable from the store's snapshot."""
        self.users.load(snapshot.users)
        per_vhost: dict[str, dict[str, list]] = defaultdict(
            lambda: {"exchanges": [], "queues": [], "bindings": [], "messages": {}}
        )
        for vhost, name, record in snapshot.exchanges:
            per_vhost[vhost]["exchanges"].append((name, record))
        for vhost, name, record in snapshot.queues:
            per_vhost[vhost]["queues"].append((name, record))
        for vhost, *binding in snapshot.bindings:
            per_vhost[vhost]["bindings"].append(tuple(binding))
        decoded: dict[int, Message] = {}
        for (vhost, queue), entries in snapshot.messages.items():
            per_vhost[vhost]["messages"][queue] = [
                (seq, _decode_once(decoded, data)) for seq, data in entries
            ]
        for name, parts in per_vhost.items():
            vhost = self.vhosts.get(name)
            if vhost is None:
                vhost = self.vhosts[name] = VHost(name, self.store, self.flow)
            vhost.restore(parts["exchanges"], parts["queues"], parts["bindings"], parts["messages"])
        self.retained.restore(snapshot.retained)
        self.sessions = dict(snapshot.sessions)
        self._loaded_kv = dict(snapshot.kv)
        for key, data in self.take_kv(vhost_records.PREFIX).items():
            name = key.removeprefix(vhost_records.PREFIX)
            vhost = self.vhosts.get(name)
            if vhost is None:
                vhost = self.vhosts[name] = VHost(name, self.store, self.flow)
            vhost_records.apply(vhost, data)

    def take_kv(self, prefix: str) -> dict[str, bytes]:
        """The key-value records under ``prefix`` loaded at start, handed over once (the
        front end that owns them keeps them from then on, and writes with store.put_kv)."""
        taken = {k: v for k, v in self._loaded_kv.items() if k.startswith(prefix)}
        for key in taken:
            del self._loaded_kv[key]
        return taken

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Housekeeping once a second: message and queue expiry, message rates, resource
        alarms."""
        task_status.started()
        while True:
            await trio.sleep(1)
            for vhost in list(self.vhosts.values()):
                vhost.tick()
            self.rates.sample(time.monotonic())
            if self.monitor is not None:
                self.monitor.check()


def _decode_once(decoded: dict[int, Message], data: bytes) -> Message:
    """A message stored once but queued in several queues is recovered as one object."""
    key = id(data)
    message = decoded.get(key)
    if message is None:
        message = decoded[key] = decode_message(data)
    return message
