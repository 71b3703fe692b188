"""kill -9 a process that is writing, then check that everything it confirmed survived."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from broker.store import SqliteStore

from .crash_writer import body

HELPER = Path(__file__).with_name("crash_writer.py")
ROOT = Path(__file__).resolve().parents[3]
CONFIRMED_BATCHES = 40


async def read_confirmed(process: trio.Process, wanted: int) -> list[tuple[int, int]]:
    """Read "FIRST LAST" lines until ``wanted`` complete ones arrived."""
    assert process.stdout is not None
    buffer = b""
    while buffer.count(b"\n") < wanted:
        chunk = await process.stdout.receive_some()
        assert chunk, "the writer exited early"
        buffer += chunk
    complete = buffer[: buffer.rindex(b"\n")].decode().splitlines()
    return [(int(first), int(last)) for first, last in (line.split() for line in complete)]


@pytest.mark.parametrize("compact_bytes", [None, 4096], ids=["default", "compacting"])
async def test_kill_9_loses_no_confirmed_message(tmp_path: Path, compact_bytes: int | None) -> None:
    """With a tiny ``compact_bytes`` the journal compacts about every commit, so the kill
    may land in the middle of a compaction too."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    extra = [] if compact_bytes is None else [str(compact_bytes)]
    process = await trio.lowlevel.open_process(
        [sys.executable, str(HELPER), str(tmp_path), *extra], stdout=subprocess.PIPE, env=env
    )
    try:
        with trio.fail_after(60):
            confirmed = await read_confirmed(process, CONFIRMED_BATCHES)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL

    store = SqliteStore(tmp_path)
    snapshot = await store.open()
    await store.close()
    recovered = dict(snapshot.messages[("/", "q")])
    last_confirmed = confirmed[-1][1]
    for seq in range(1, last_confirmed + 1):
        assert recovered[seq] == body(seq)
    copies = dict(snapshot.messages[("/", "copy")])
    # Acks of the batch before the last confirmed one were synced with it; the later ones
    # may or may not have been, and either is fine.
    for seq in range(1, confirmed[-2][1] + 1):
        assert (seq in copies) == (seq % 2 == 0)
    assert int(snapshot.kv["last"]) >= last_confirmed
