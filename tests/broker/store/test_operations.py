"""Every store operation, on every backend, as seen by recovery after a restart."""

from __future__ import annotations

import pytest

from broker.store import Snapshot, StoreError

from .conftest import Backend


async def test_new_store_is_empty(backend: Backend) -> None:
    store, snapshot = await backend.open()
    assert snapshot == Snapshot()
    await store.close()


async def test_exchanges_put_replace_delete(backend: Backend) -> None:
    store, _ = await backend.open()
    store.put_exchange("/", "logs", {"type": "fanout"})
    store.put_exchange("/", "events", {"type": "topic"})
    store.put_exchange("other", "logs", {"type": "direct"})
    await store.sync()
    store.put_exchange("/", "logs", {"type": "topic", "durable": True})
    store.delete_exchange("/", "events")
    await store.sync()
    store, snapshot = await backend.reopen(store)
    assert sorted(snapshot.exchanges) == [
        ("/", "logs", {"type": "topic", "durable": True}),
        ("other", "logs", {"type": "direct"}),
    ]
    await store.close()


async def test_delete_exchange_drops_bindings_from_and_to_it(backend: Backend) -> None:
    store, _ = await backend.open()
    store.put_binding("/", "x", "queue", "q", "k", {})
    store.put_binding("/", "y", "exchange", "x", "k", {})
    store.put_binding("/", "y", "queue", "q", "k", {})
    store.put_binding("v2", "x", "queue", "q", "k", {})
    await store.sync()
    store.delete_exchange("/", "x")
    store, snapshot = await backend.reopen(store)
    assert sorted(snapshot.bindings) == [
        ("/", "y", "queue", "q", "k", {}),
        ("v2", "x", "queue", "q", "k", {}),
    ]
    await store.close()


async def test_binding_identity_includes_arguments_in_any_key_order(backend: Backend) -> None:
    store, _ = await backend.open()
    store.put_binding("/", "h", "queue", "q", "", {"x-match": "all", "a": 1})
    store.put_binding("/", "h", "queue", "q", "", {"x-match": "any", "a": 1})
    store.put_binding("/", "h", "queue", "q", "", {"a": 1, "x-match": "all"})
    await store.sync()
    store, snapshot = await backend.reopen(store)
    assert sorted(b[5]["x-match"] for b in snapshot.bindings) == ["all", "any"]
    store.delete_binding("/", "h", "queue", "q", "", {"a": 1, "x-match": "all"})
    store.delete_binding("/", "h", "queue", "q", "", {"nothing": "matches"})
    store, snapshot = await backend.reopen(store)
    assert snapshot.bindings == [("/", "h", "queue", "q", "", {"x-match": "any", "a": 1})]
    await store.close()


async def test_delete_queue_drops_its_messages_and_bindings(backend: Backend) -> None:
    store, _ = await backend.open()
    store.put_queue("/", "q", {"durable": True})
    store.put_queue("/", "keep", {"durable": True})
    store.put_binding("/", "amq.topic", "queue", "q", "a.#", {})
    store.put_binding("/", "amq.topic", "queue", "keep", "a.#", {})
    store.put_binding("/", "q", "exchange", "q", "", {})  # an exchange that shares the name
    store.enqueue("/", "q", 1, 1, b"shared")
    store.enqueue("/", "keep", 1, 1, b"shared")
    store.enqueue("/", "q", 2, 2, b"only q")
    await store.sync()
    store.delete_queue("/", "q")
    store, snapshot = await backend.reopen(store)
    assert snapshot.queues == [("/", "keep", {"durable": True})]
    assert sorted(snapshot.bindings) == [
        ("/", "amq.topic", "queue", "keep", "a.#", {}),
        ("/", "q", "exchange", "q", "", {}),
    ]
    assert snapshot.messages == {("/", "keep"): [(1, b"shared")]}
    assert backend.stored_messages() == 1
    await store.close()


async def test_messages_recover_per_queue_in_seq_order(backend: Backend) -> None:
    store, _ = await backend.open()
    for seq in (3, 1, 2):
        store.enqueue("/", "q", seq, seq, b"m%d" % seq)
    await store.sync()
    store.enqueue("/", "q", 4, 4, b"m4")
    store.enqueue("v", "q", 1, 5, b"other vhost")
    store, snapshot = await backend.reopen(store)
    assert snapshot.messages == {
        ("/", "q"): [(1, b"m1"), (2, b"m2"), (3, b"m3"), (4, b"m4")],
        ("v", "q"): [(1, b"other vhost")],
    }
    await store.close()


async def test_shared_message_is_stored_once_until_its_last_reference_goes(
    backend: Backend,
) -> None:
    store, _ = await backend.open()
    for queue in ("a", "b", "c"):
        store.enqueue("/", queue, 10, 99, b"fan-out")
    await store.sync()
    assert backend.stored_messages() == 1
    store, snapshot = await backend.reopen(store)
    bodies = [snapshot.messages[("/", queue)][0][1] for queue in ("a", "b", "c")]
    assert bodies == [b"fan-out"] * 3
    store.dequeue("/", "a", 10)
    store.purge("/", "b")
    await store.sync()
    assert backend.stored_messages() == 1
    store.dequeue("/", "c", 10)
    await store.sync()
    assert backend.stored_messages() == 0
    store, snapshot = await backend.reopen(store)
    assert snapshot.messages == {}
    await store.close()


async def test_message_ids_are_scoped_to_one_run(backend: Backend) -> None:
    store, _ = await backend.open()
    store.enqueue("/", "old", 1, 1, b"first run")
    store, _ = await backend.reopen(store)
    store.enqueue("/", "new", 1, 1, b"second run")
    store, snapshot = await backend.reopen(store)
    assert snapshot.messages == {
        ("/", "old"): [(1, b"first run")],
        ("/", "new"): [(1, b"second run")],
    }
    store.dequeue("/", "old", 1)
    store, snapshot = await backend.reopen(store)
    assert snapshot.messages == {("/", "new"): [(1, b"second run")]}
    assert backend.stored_messages() == 1
    await store.close()


async def test_dequeue_and_purge(backend: Backend) -> None:
    store, _ = await backend.open()
    for seq in range(1, 6):
        store.enqueue("/", "q", seq, seq, b"m%d" % seq)
        store.enqueue("/", "p", seq, seq, b"m%d" % seq)
    await store.sync()
    store.dequeue("/", "q", 2)
    store.dequeue("/", "q", 4)
    store.dequeue("/", "q", 42)  # unknown seq: nothing to do
    store.purge("/", "p")
    store.enqueue("/", "p", 6, 6, b"after purge")
    store, snapshot = await backend.reopen(store)
    assert snapshot.messages == {
        ("/", "q"): [(1, b"m1"), (3, b"m3"), (5, b"m5")],
        ("/", "p"): [(6, b"after purge")],
    }
    await store.close()


async def test_acks_in_runs_and_out_of_order_delete_exactly_their_entries(
    backend: Backend,
) -> None:
    store, _ = await backend.open()
    for seq in range(1, 21):
        store.enqueue("/", "q", seq, seq, b"m%d" % seq)
        store.enqueue("/", "r", seq, 100 + seq, b"r%d" % seq)
    await store.sync()
    for seq in (9, 3, 4, 5, 1, 12, 13, 14, 20, 7):  # runs 3-5 and 12-14, gaps between
        store.dequeue("/", "q", seq)
    store.dequeue("/", "r", 2)
    store, snapshot = await backend.reopen(store)
    kept = [2, 6, 8, 10, 11, 15, 16, 17, 18, 19]
    assert snapshot.messages[("/", "q")] == [(seq, b"m%d" % seq) for seq in kept]
    assert [seq for seq, _ in snapshot.messages[("/", "r")]] == [1, *range(3, 21)]
    await store.close()


@pytest.mark.parametrize("commit_between", [False, True])
async def test_requeue_at_the_same_seq_replaces_the_entry(
    backend: Backend, commit_between: bool
) -> None:
    store, _ = await backend.open()
    store.enqueue("/", "q", 1, 1, b"original")
    if commit_between:
        await store.sync()
    store.dequeue("/", "q", 1)
    store.enqueue("/", "q", 1, 2, b"redelivered")
    store, snapshot = await backend.reopen(store)
    assert snapshot.messages == {("/", "q"): [(1, b"redelivered")]}
    assert backend.stored_messages() == 1
    await store.close()


async def test_last_value_records_set_replace_and_clear(backend: Backend) -> None:
    store, _ = await backend.open()
    store.set_retained("a/b", b"1")
    store.set_retained("a/c", b"x")
    store.put_session("mqtt:dev1", b"s1")
    store.put_session("mqtt:dev2", b"s2")
    store.put_user("alice", {"tags": ["administrator"]})
    store.put_user("bob", {"tags": []})
    store.put_kv("vhosts", b"/")
    store.put_kv("gone", b"soon")
    await store.sync()
    store.set_retained("a/b", b"2")
    store.set_retained("a/c", None)
    store.put_session("mqtt:dev2", None)
    store.put_user("bob", None)
    store.put_user("alice", {"tags": []})
    store.put_kv("gone", None)
    store.put_kv("vhosts", b"/,test")
    store, snapshot = await backend.reopen(store)
    assert snapshot.retained == {"a/b": b"2"}
    assert snapshot.sessions == {"mqtt:dev1": b"s1"}
    assert snapshot.users == {"alice": {"tags": []}}
    assert snapshot.kv == {"vhosts": b"/,test"}
    await store.close()


async def test_records_are_captured_when_queued(backend: Backend) -> None:
    store, _ = await backend.open()
    record = {"durable": True, "arguments": {"x-max-length": 10}}
    store.put_queue("/", "q", record)
    record["arguments"]["x-max-length"] = 99
    store, snapshot = await backend.reopen(store)
    assert snapshot.queues == [("/", "q", {"durable": True, "arguments": {"x-max-length": 10}})]
    await store.close()


async def test_sync_after_close_raises(backend: Backend) -> None:
    store, _ = await backend.open()
    await store.close()
    store.put_kv("late", b"x")
    with pytest.raises(StoreError):
        await store.sync()
