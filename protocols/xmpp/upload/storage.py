"""Uploaded files on disk, one directory per upload: ``<dir>/<token>/<file name>`` and
its metadata in ``<dir>/<token>/.meta.json``.  A file is written into
``<dir>/.incoming/<token>/``, synced, and renamed into place, so after a crash an upload
is either whole with its metadata or absent; the directory is all the state there is.

These calls block (disk writes and fsync): the service runs them in worker threads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from broker.log import event
from protocols.xmpp.upload.names import TOKEN, sanitise_filename
from protocols.xmpp.upload.slots import StoredFile

log = logging.getLogger("broker.xmpp")

META = ".meta.json"
INCOMING = ".incoming"


class FileStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(self) -> list[StoredFile]:
        """The stored files, oldest first; unfinished writes and anything unreadable are
        removed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.directory / INCOMING, ignore_errors=True)
        found = []
        for entry in self.directory.iterdir():
            if not TOKEN.fullmatch(entry.name):
                continue
            stored = _read_meta(entry)
            if stored is None:
                event(log, logging.WARNING, "xmpp upload unreadable, removed", path=str(entry))
                shutil.rmtree(entry, ignore_errors=True)
            else:
                found.append(stored)
        return sorted(found, key=lambda f: f.created)

    def path(self, stored: StoredFile) -> Path:
        """Where the file's bytes are; ValueError for a token or name that would lead
        anywhere but one file in its own directory under ours."""
        if not TOKEN.fullmatch(stored.token) or sanitise_filename(stored.filename) != (
            stored.filename
        ):
            raise ValueError(f"unsafe upload path {stored.token!r}/{stored.filename!r}")
        return self.directory / stored.token / stored.filename

    def write(self, stored: StoredFile, data: bytes) -> None:
        """Store ``data`` durably: it and its metadata synced before the rename that makes
        them visible, and the rename synced too."""
        target = self.path(stored)
        incoming = self.directory / INCOMING / stored.token
        incoming.mkdir(parents=True)
        try:
            _write_synced(incoming / stored.filename, data)
            meta = {
                "owner": stored.owner,
                "filename": stored.filename,
                "size": stored.size,
                "content_type": stored.content_type,
                "created": stored.created,
            }
            _write_synced(incoming / META, json.dumps(meta).encode())
            _sync_directory(incoming)
            incoming.rename(target.parent)
            _sync_directory(self.directory)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise

    def read(self, stored: StoredFile) -> bytes:
        return self.path(stored).read_bytes()

    def remove(self, stored: StoredFile) -> None:
        shutil.rmtree(self.path(stored).parent, ignore_errors=True)


def _read_meta(entry: Path) -> StoredFile | None:
    try:
        meta = json.loads((entry / META).read_bytes())
        stored = StoredFile(
            token=entry.name,
            owner=str(meta["owner"]),
            filename=str(meta["filename"]),
            size=int(meta["size"]),
            content_type=str(meta["content_type"]),
            created=float(meta["created"]),
        )
        if sanitise_filename(stored.filename) != stored.filename:
            return None
        if (entry / stored.filename).stat().st_size != stored.size:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stored


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
