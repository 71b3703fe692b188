"""Child process of the kill -9 test: enqueue in batches, print each batch once synced.

Usage: python crash_writer.py DATA_DIR. Prints "FIRST LAST" per confirmed batch of seqs;
acks every other message of the previous batch so dequeues are in flight too.
"""

from __future__ import annotations

import sys

import trio

from broker.store import SqliteStore

BATCH = 50


def body(seq: int) -> bytes:
    return b"message %d " % seq + b"x" * 48


async def main(data_dir: str) -> None:
    store = SqliteStore(data_dir)
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
            for acked in range(first - BATCH, first, 2):
                store.dequeue("/", "copy", acked)
            store.put_kv("last", b"%d" % seq)
            await store.sync()
            print(first, seq, flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
