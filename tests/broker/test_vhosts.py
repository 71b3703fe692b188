"""Vhosts created and deleted at run time: names checked, kept in the store across a
restart even when empty, and deleted with their connections, queues, messages, exchanges
and permissions.  Each test runs on MemoryStore and SqliteStore, restarted on the same
data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.acl import TopicACL
from broker.auth import UserDB
from broker.core import DEFAULT_VHOST, Broker
from broker.errors import NotAllowed, NotFound
from broker.message import Message, Properties
from broker.store import MemoryStore, SqliteStore, Store
from broker.vhosts import DELETED_REASON, MAX_NAME_BYTES, PREFIX

PERSISTENT = Properties(delivery_mode=2)


class Restarts:
    """Brokers over one store location, each recovered from what the previous one left."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self._memory = MemoryStore()
        self.store: Store | None = None

    async def start(self) -> Broker:
        if self.store is not None:
            await self.store.close()
        self.store = self._memory if self.kind == "memory" else SqliteStore(self.path)
        users = UserDB()
        broker = Broker(self.store, users, TopicACL([]))
        broker.restore(await self.store.open())
        users.on_change = self.store.put_user
        return broker

    async def restart(self, broker: Broker) -> Broker:
        await broker.store.sync()
        return await self.start()


@pytest.fixture(params=["memory", "sqlite"])
async def restarts(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    restarts = Restarts(request.param, tmp_path)
    yield restarts
    if restarts.store is not None:
        await restarts.store.close()


async def test_a_created_vhost_is_idempotent_and_survives_a_restart_empty(
    restarts: Restarts,
) -> None:
    broker = await restarts.start()
    assert broker.add_vhost("empty", description="no exchanges", tags=["test"])
    assert not broker.add_vhost("empty")  # idempotent: only says it existed
    assert not broker.add_vhost(DEFAULT_VHOST)

    broker = await restarts.restart(broker)
    vhost = broker.vhost("empty")
    assert (vhost.description, vhost.tags) == ("no exchanges", ["test"])
    assert broker.take_kv(PREFIX) == {}  # taken by the core, not left for a front end


async def test_a_second_put_changes_only_what_it_names(restarts: Restarts) -> None:
    broker = await restarts.start()
    broker.add_vhost("v", description="first", tags=["a"])
    broker.add_vhost("v", tags=["b", "c"])
    broker = await restarts.restart(broker)
    assert (broker.vhost("v").description, broker.vhost("v").tags) == ("first", ["b", "c"])


@pytest.mark.parametrize(
    "name",
    ["", "x" * (MAX_NAME_BYTES + 1), "é" * (MAX_NAME_BYTES // 2 + 1), "a\nb", "nul\x00"],
)
async def test_unusable_names_are_refused(restarts: Restarts, name: str) -> None:
    broker = await restarts.start()
    with pytest.raises(ValueError):
        broker.add_vhost(name)
    assert name not in broker.vhosts


async def test_queues_and_persistent_messages_in_a_new_vhost_survive_a_restart(
    restarts: Restarts,
) -> None:
    broker = await restarts.start()
    broker.add_vhost("orders")
    vhost = broker.vhost("orders")
    vhost.declare_queue("q", durable=True)
    vhost.publish(Message("", "q", b"kept", PERSISTENT))

    broker = await restarts.restart(broker)
    entry = broker.vhost("orders").queue("q").get(None)
    assert entry is not None and entry.message.body == b"kept"
    assert "q" not in broker.vhost(DEFAULT_VHOST).queues


async def test_deleting_a_vhost_drops_its_contents_and_permissions_for_good(
    restarts: Restarts,
) -> None:
    broker = await restarts.start()
    broker.users.add("alice", "secret")
    broker.users.set_permissions("alice", "gone", ".*", ".*", ".*")
    broker.users.set_permissions("alice", DEFAULT_VHOST, ".*", ".*", ".*")
    broker.add_vhost("gone")
    vhost = broker.vhost("gone")
    vhost.declare_exchange("x", "topic", durable=True)
    vhost.bind(vhost.declare_queue("q", durable=True), "x", "#", None)
    vhost.publish(Message("x", "k", b"lost", PERSISTENT))
    broker.vhost(DEFAULT_VHOST).declare_queue("q", durable=True)  # same name, other vhost
    broker = await restarts.restart(broker)
    queue = broker.vhost("gone").queue("q")
    assert len(queue) == 1

    broker.delete_vhost("gone")
    assert "gone" not in broker.vhosts
    assert queue.deleted and len(queue) == 0
    assert list(broker.users.get("alice").permissions) == [DEFAULT_VHOST]
    with pytest.raises(NotFound):
        broker.delete_vhost("gone")

    broker = await restarts.restart(broker)
    assert "gone" not in broker.vhosts
    assert list(broker.users.get("alice").permissions) == [DEFAULT_VHOST]
    assert "q" in broker.vhost(DEFAULT_VHOST).queues
    broker.add_vhost("gone")  # a vhost of that name again starts empty
    assert set(broker.vhost("gone").queues) == set()
    assert "x" not in broker.vhost("gone").exchanges


async def test_deleting_a_vhost_closes_only_its_connections(restarts: Restarts) -> None:
    broker = await restarts.start()
    broker.add_vhost("gone")
    closed: dict[str, str] = {}
    for peer, vhost in (("a", "gone"), ("b", DEFAULT_VHOST), ("c", "gone")):
        broker.connections.register(
            "amqp",
            peer,
            lambda vhost=vhost: {"vhost": vhost},
            lambda reason, peer=peer: closed.__setitem__(peer, reason),
        )
    broker.delete_vhost("gone")
    assert closed == {"a": DELETED_REASON, "c": DELETED_REASON}


async def test_the_default_vhost_cannot_be_deleted(restarts: Restarts) -> None:
    broker = await restarts.start()
    with pytest.raises(NotAllowed):
        broker.delete_vhost(DEFAULT_VHOST)
    assert DEFAULT_VHOST in broker.vhosts
