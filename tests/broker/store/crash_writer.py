"""Child process of the kill -9 test: enqueue in batches, print each batch once synced.

Usage: python crash_writer.py DATA_DIR [COMPACT_BYTES]. Prints "FIRST LAST" per confirmed
batch of seqs; acks every other message of the previous batch so dequeues are in flight too,
and every message of a third queue of large bodies, so the journal holds much that is dead
(with a small COMPACT_BYTES it compacts about every commit).
"""

from __future__ import annotations

import sys

import trio

from broker.store import SqliteStore

BATCH = 50
DEAD = b"d" * 2000
DEAD_IDS = 1 << 30


def body(seq: int) -> bytes:
    return b"message %d " % seq + b"x" * 48


async def main(data_dir: str, compact_bytes: str | None = None) -> None:
    options = {} if compact_bytes is None else {"compact_bytes": int(compact_bytes)}
    store = SqliteStore(data_dir, **options)
    await store.open()
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        seq = 0
        while True:
            first = seq + 1
            for _ in range(BATCH):
                seq += 1
                store.enqueue("/", "q", seq, seq, body(seq))
                store.enqueue("/", "copy", seq, seq, body(seq))
                store.enqueue("/", "drained", seq, DEAD_IDS + seq, DEAD)
            for acked in range(first - BATCH, first):
                store.dequeue("/", "drained", acked)
                if acked % 2:
                    store.dequeue("/", "copy", acked)
            store.put_kv("last", b"%d" % seq)
            await store.sync()
            print(first, seq, flush=True)


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:])
