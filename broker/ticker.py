"""A shared clock tick for read coalescing, as cheap as a wake-up can be.

Front ends that let a steady publisher's packets gather for a moment wait here for the
next tick instead of sleeping each on its own: one timer serves every waiter, and each
waits on a plain event.  On Linux the timer is a timerfd watched like a socket, which
costs about half of a ``trio.sleep`` (no cancel scope, no deadline, no Cancelled raised);
elsewhere the ticking task sleeps.  The timer is armed only while someone waits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import trio

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _timerfd_api() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.timerfd_create  # noqa: B018 - probe: absent outside Linux
        libc.timerfd_settime  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


class Ticker:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._tick = trio.Event()
        self._wanted = trio.Event()
        self._armed = False
        self._libc = _timerfd_api()
        self._fd = -1
        if self._libc is not None:
            self._fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        seconds, fraction = divmod(interval, 1)
        self._spec = _Itimerspec(_Timespec(0, 0), _Timespec(int(seconds), int(fraction * 1e9)))

    async def wait(self) -> None:
        """Until the next tick (at most ``interval`` from now)."""
        if not self._armed:
            self._armed = True
            if self._fd >= 0:
                self._libc.timerfd_settime(self._fd, 0, ctypes.byref(self._spec), None)
            else:
                self._wanted.set()
        await self._tick.wait()

    async def run(self) -> None:
        """The ticking task; the runtime starts it beside the listeners."""
        try:
            while True:
                if self._fd >= 0:
                    await trio.lowlevel.wait_readable(self._fd)
                    try:
                        os.read(self._fd, 8)
                    except BlockingIOError:
                        continue
                else:
                    await self._wanted.wait()
                    self._wanted = trio.Event()
                    await trio.sleep(self.interval)
                self._armed = False
                tick, self._tick = self._tick, trio.Event()
                tick.set()
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
