"""The upload service as a whole: the bookkeeping, the files on disk, the URLs of slots,
and the sweep that removes expired files.  The runtime creates it when the HTTP listener
is on, routes ``PATH`` to ``web.handler``, and installs the XMPP component once it knows the
listener's address."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import trio

from broker.log import event
from protocols.xmpp.upload.component import UploadComponent
from protocols.xmpp.upload.slots import Limits, Slot, StoredFile, Uploads
from protocols.xmpp.upload.storage import FileStore

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

log = logging.getLogger("broker.xmpp")

#: the HTTP path under which slots are PUT and files are fetched
PATH = "/upload/"
#: seconds between sweeps for expired files, at most
MAX_SWEEP_INTERVAL = 60.0


class UploadService:
    def __init__(self, directory: Path, limits: Limits) -> None:
        self.uploads = Uploads(limits)
        self.files = FileStore(directory)
        #: scheme, host and port the slots' URLs start with (set by ``install``)
        self.base_url = ""

    @property
    def limits(self) -> Limits:
        return self.uploads.limits

    def load(self) -> None:
        """Index the files stored before a restart (blocking: call before serving)."""
        for stored in self.files.load():
            self.uploads.add(stored)

    def install(self, front: XMPPFrontEnd, base_url: str) -> None:
        """Offer the service at ``upload.<domain>``, its files under ``base_url``."""
        self.base_url = base_url.rstrip("/")
        jid = f"upload.{front.domain}"
        front.components[jid] = UploadComponent(front, self)
        front.disco_items[jid] = "HTTP File Upload"

    def url(self, slot: Slot) -> str:
        return f"{self.base_url}{PATH}{slot.token}/{quote(slot.filename, safe='')}"

    def now(self) -> float:
        return time.time()

    async def store(self, slot: Slot, content_type: str | None, data: bytes) -> StoredFile | None:
        """Write a claimed slot's bytes durably, then make them fetchable; None (and the
        slot abandoned) if the disk refuses them."""
        stored = self.uploads.filled(slot, content_type, self.now())
        try:
            await trio.to_thread.run_sync(self.files.write, stored, data)
        except OSError as exc:
            self.uploads.abandon(slot)
            event(log, logging.WARNING, "xmpp upload failed", owner=slot.owner, error=str(exc))
            return None
        self.uploads.add(stored)
        event(log, logging.INFO, "xmpp upload stored", owner=stored.owner, size=stored.size)
        return stored

    async def read(self, stored: StoredFile) -> bytes:
        return await trio.to_thread.run_sync(self.files.read, stored)

    async def run(self) -> None:
        """Remove expired files from disk, every so often."""
        after = self.limits.expire_after
        interval = min(MAX_SWEEP_INTERVAL, after / 2) if after else MAX_SWEEP_INTERVAL
        while True:
            await self.sweep()
            await trio.sleep(interval)

    async def sweep(self) -> None:
        for stored in self.uploads.expire(self.now()):
            await trio.to_thread.run_sync(self.files.remove, stored)
            event(log, logging.INFO, "xmpp upload expired", owner=stored.owner, size=stored.size)
