"""One generation of the journal on disk: ``<data_dir>/journal.<generation>``.

Appends are one ``pwritev`` and one ``fdatasync``.  A failed append is cut off again so
the next frame follows the last whole one (replay stops at the first bad frame); after a
failed fdatasync the file's state is unknown, so the journal refuses further appends.
A compacted journal is a new generation written beside the old one; SQLite's metadata
names the current generation, so switching is one SQLite commit and a crash at any point
leaves one complete generation named.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .journal import Record, encode, frames

_NAME = re.compile(r"journal\.(\d+)")


def path_of(directory: Path, generation: int) -> Path:
    return directory / f"journal.{generation}"


def remove_others(directory: Path, generation: int) -> None:
    """Delete journal files of other generations: an unfinished compaction's, or the one a
    finished compaction had not yet removed."""
    for path in directory.iterdir():
        found = _NAME.fullmatch(path.name)
        if found and int(found[1]) != generation:
            path.unlink()


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> tuple[list[tuple[int, int, Record]], int]:
    """Every whole frame of a journal file, and its good length (0 if there is no file)."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return [], 0
    with file:
        if os.fstat(file.fileno()).st_size == 0:
            return [], 0
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found = list(frames(data))
    return found, found[-1][1] if found else 0


class JournalFile:
    """An open journal generation, appended to at ``size``."""

    def __init__(self, path: Path, size: int) -> None:
        """Open ``path`` for appending after its first ``size`` bytes (its good length):
        a torn tail beyond them is cut off now.  Writes are O_DSYNC, so one ``pwritev``
        is a write and its fdatasync in one call."""
        self.path = path
        created = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_DSYNC, 0o600)
        self.size = size
        self._broken = False
        try:
            if os.fstat(self._fd).st_size != size:
                os.ftruncate(self._fd, size)
                os.fsync(self._fd)
            if created:
                sync_directory(path.parent)
        except BaseException:
            self.close()
            raise

    @classmethod
    def write(cls, path: Path, records: Iterable[Record]) -> JournalFile:
        """Write a new generation holding ``records`` durably (file and directory), and
        open it for appending."""
        try:
            with path.open("wb") as file:
                for record in records:
                    file.writelines(encode(record))
                file.flush()
                os.fsync(file.fileno())
                size = file.tell()
            sync_directory(path.parent)
            return cls(path, size)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def append(self, frame: tuple[bytes, bytes]) -> None:
        """Make the frame of a record durable at the end of the journal."""
        if self._broken:
            raise OSError("the journal could not cut off a failed write; restart to recover")
        total = len(frame[0]) + len(frame[1])
        try:
            written = os.pwritev(self._fd, frame, self.size)
            if written != total:  # a regular file writes all but on error: retry the rest
                rest = memoryview(b"".join(frame))[written:]
                while rest:
                    done = os.pwrite(self._fd, rest, self.size + written)
                    written += done
                    rest = rest[done:]
        except BaseException:
            self._cut()
            raise
        self.size += total

    def _cut(self) -> None:
        """Cut a failed frame off durably, so the next one follows the last whole one; if
        even that fails, refuse appends until a restart replays the file."""
        try:
            os.ftruncate(self._fd, self.size)
            os.fsync(self._fd)
        except OSError:
            self._broken = True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
