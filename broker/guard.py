"""What every protocol adapter does around one client connection, whatever its protocol."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from broker.log import event

#: Errors that are the peer's doing (reset, gone, too slow): the end of a connection, not a
#: fault of the broker.
PEER_FAULTS = (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)


@asynccontextmanager
async def guarded_connection(
    log: logging.Logger,
    protocol: str,
    peer: str,
    stream: trio.abc.Stream,
    lost: Callable[[], None],
    closed: Callable[[], None],
) -> AsyncIterator[None]:
    """Run the body as one connection, which never raises for the peer's faults: those
    end it with a debug line, anything else is logged as a failure.  However it ends,
    ``lost`` (release the connection's state) runs, the stream is closed, then ``closed``."""
    try:
        yield
    except* PEER_FAULTS:
        event(log, logging.DEBUG, f"{protocol} connection dropped", peer=peer)
    except* Exception:
        log.exception(f"{protocol} connection failed", extra={"fields": {"peer": peer}})
    finally:
        lost()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()
        closed()
