"""Resource alarms: memory use over its high watermark, free disk under its limit.

As in RabbitMQ, an alarm blocks publishers of every protocol (AMQP clients are told with
connection.blocked) until it clears; consumers carry on, which is how the backlog drains.
The core checks the resources once a second; front ends subscribe to changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import trio

MEMORY, DISK = "memory", "disk"
_PAGE = os.sysconf("SC_PAGE_SIZE")


def total_memory() -> int:
    """Bytes of physical memory."""
    return os.sysconf("SC_PHYS_PAGES") * _PAGE


def resident_memory() -> int:
    """This process's resident set in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE


def free_disk(path: Path) -> int:
    """Bytes available to this process on the filesystem holding ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


class Alarms:
    """The set of raised alarms; ``cleared`` is set while there is none (publishers wait on
    it), and listeners are told of every change (AMQP's connection.blocked)."""

    def __init__(self) -> None:
        self.active: set[str] = set()
        self.cleared = trio.Event()
        self.cleared.set()
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def set(self, name: str, raised: bool) -> None:
        if raised == (name in self.active):
            return
        if raised:
            self.active.add(name)
            if self.cleared.is_set():
                self.cleared = trio.Event()
        else:
            self.active.discard(name)
            if not self.active:
                self.cleared.set()
        for listener in self._listeners:
            listener()


class ResourceMonitor:
    """Raises and clears the memory and disk alarms from measurements.

    ``memory_limit`` and ``disk_limit`` are bytes; 0 turns a check off.
    """

    def __init__(self, alarms: Alarms, data_dir: Path, memory_limit: int, disk_limit: int) -> None:
        self.alarms = alarms
        self.data_dir = data_dir
        self.memory_limit = memory_limit
        self.disk_limit = disk_limit

    def check(self) -> None:
        if self.memory_limit:
            self.alarms.set(MEMORY, resident_memory() > self.memory_limit)
        if self.disk_limit:
            self.alarms.set(DISK, free_disk(self.data_dir) < self.disk_limit)
