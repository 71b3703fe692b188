"""The journal sans I/O: replaying the frames of any operation sequence, cut at any byte,
gives exactly the state of the last whole commit."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.store.base import Batch
from broker.store.journal import QueueState, Record, encode, frames, ranges, record_of

from .conftest import bad_refcounts

QUEUES = ["a", "b"]

operation = st.one_of(
    st.tuples(st.just("enqueue"), st.sampled_from(QUEUES), st.integers(0, 3)),
    st.tuples(st.just("fanout"), st.integers(0, 3)),
    st.tuples(st.just("dequeue"), st.sampled_from(QUEUES), st.integers(0, 5)),
    st.tuples(st.just("requeue"), st.sampled_from(QUEUES), st.integers(0, 5)),
    st.tuples(st.just("purge"), st.sampled_from(QUEUES)),
    st.tuples(st.just("delete_queue"), st.sampled_from(QUEUES)),
    st.tuples(st.just("commit")),
    st.tuples(st.just("restart")),
)

Messages = dict[tuple[str, str], list[tuple[int, bytes]]]


class Model:
    """Applies operations to a Batch and, at once, to plain dicts: the expected state."""

    def __init__(self) -> None:
        self.epoch = 1
        self.batch = Batch()
        self.queues: dict[str, dict[int, bytes]] = {queue: {} for queue in QUEUES}
        self.next_seq = dict.fromkeys(QUEUES, 1)
        self.frames: list[bytes] = []
        self.committed: list[Messages] = []  # the expected state after each frame

    def body(self, message_id: int) -> bytes:
        return b"epoch %d id %d" % (self.epoch, message_id)

    def enqueue(self, queue: str, message_id: int, seq: int | None = None) -> None:
        if seq is None:
            seq = self.next_seq[queue]
            self.next_seq[queue] += 1
        self.batch.enqueue("/", queue, seq, message_id, self.body(message_id))
        self.queues[queue][seq] = self.body(message_id)

    def apply(self, op: tuple) -> None:
        kind, *args = op
        if kind == "enqueue":
            self.enqueue(*args)
        elif kind == "fanout":
            for queue in QUEUES:
                self.enqueue(queue, args[0])
        elif kind in ("dequeue", "requeue"):
            queue, index = args
            live = sorted(self.queues[queue])
            if live:
                seq = live[index % len(live)]
                self.batch.dequeue("/", queue, seq)
                del self.queues[queue][seq]
                if kind == "requeue":
                    self.enqueue(queue, 100 + seq, seq)
        elif kind in ("purge", "delete_queue"):
            self.batch.drop_entries("/", args[0])
            self.batch.log.append((kind, "/", args[0]))
            self.queues[args[0]] = {}
            if kind == "delete_queue":
                self.next_seq[args[0]] = 1
        elif kind == "commit":
            self.commit()
        elif kind == "restart":
            self.commit()
            self.epoch += 1

    def commit(self) -> None:
        header, payload = encode(record_of(self.batch, self.epoch))
        self.frames.append(header + payload)
        self.committed.append(self.messages())
        self.batch = Batch()

    def messages(self) -> Messages:
        return {
            ("/", queue): sorted(entries.items())
            for queue, entries in self.queues.items()
            if entries
        }


def replay(data: bytes) -> tuple[QueueState, int]:
    state = QueueState()
    found = list(frames(data))
    for _, _, record in found:
        state.apply(record)
    return state, found[-1][1] if found else 0


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, max_size=40), st.data())
def test_replay_of_a_journal_cut_anywhere_is_the_last_whole_commit(
    program: list[tuple], data: st.DataObject
) -> None:
    model = Model()
    for op in program:
        model.apply(op)
    model.commit()
    journal = b"".join(model.frames)
    cut = data.draw(st.integers(0, len(journal)), label="cut")
    state, good = replay(journal[:cut])
    ends = [sum(map(len, model.frames[: index + 1])) for index in range(len(model.frames))]
    whole = sum(end <= cut for end in ends)
    assert good == (ends[whole - 1] if whole else 0)
    assert state.messages() == (model.committed[whole - 1] if whole else {})
    assert bad_refcounts(state) == 0
    # compaction's records rebuild exactly this state
    rebuilt, _ = replay(b"".join(b"".join(encode(record)) for record in state.records(64)))
    assert rebuilt.messages() == state.messages()
    assert rebuilt.bodies == state.bodies


def test_a_shared_body_is_held_once_until_its_last_entry_goes() -> None:
    batch = Batch()
    for queue in QUEUES:
        batch.enqueue("/", queue, 1, 7, b"shared")
    state = QueueState()
    state.apply(record_of(batch, 1))
    assert list(state.bodies.values()) == [[b"shared", 2]]
    batch = Batch()
    batch.dequeue("/", "a", 1)
    state.apply(record_of(batch, 1))
    assert list(state.bodies.values()) == [[b"shared", 1]]
    batch = Batch()
    batch.drop_entries("/", "b")
    batch.log.append(("purge", "/", "b"))
    state.apply(record_of(batch, 1))
    assert state.bodies == {} and state.queues == {}
    assert state.live_bytes == 0


def test_replay_stops_at_a_corrupt_frame() -> None:
    model = Model()
    for message_id in range(3):
        model.apply(("enqueue", "a", message_id))
        model.commit()
    journal = bytearray(b"".join(model.frames))
    second = len(model.frames[0])
    journal[second + struct.calcsize("<II") + 2] ^= 0xFF
    state, good = replay(bytes(journal))
    assert good == second
    assert state.messages() == model.committed[0]


def test_a_zero_filled_tail_is_no_frame() -> None:
    model = Model()
    model.apply(("enqueue", "a", 1))
    model.commit()
    state, good = replay(model.frames[0] + bytes(4096))
    assert good == len(model.frames[0])
    assert state.messages() == model.committed[0]


def test_acks_become_runs_of_seqs() -> None:
    deletes = [("/", "q", seq) for seq in (5, 1, 2, 3, 3, 9, 10)] + [("/", "p", 4)]
    assert ranges(deletes) == [
        ("/", "p", 4, 4),
        ("/", "q", 1, 3),
        ("/", "q", 5, 5),
        ("/", "q", 9, 10),
    ]


def test_metadata_is_what_sqlite_must_apply() -> None:
    empty = Record(1, [], [], [], [], {}, {}, {}, {})
    assert not empty.metadata()
    assert not empty._replace(log=[("purge", "/", "q")]).metadata()
    assert empty._replace(log=[("delete_queue", "/", "q")]).metadata()
    assert empty._replace(kv={"k": None}).metadata()


def test_an_entry_enqueued_again_at_its_seq_releases_the_body_it_replaces() -> None:
    state = QueueState()
    for message_id in (1, 2):
        batch = Batch()
        batch.enqueue("/", "q", 1, message_id, b"body %d" % message_id)
        state.apply(record_of(batch, 1))
    assert state.messages() == {("/", "q"): [(1, b"body 2")]}
    assert bad_refcounts(state) == 0 and len(state.bodies) == 1
