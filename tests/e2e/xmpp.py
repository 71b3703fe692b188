"""slixmpp clients for the tests: each runs its asyncio loop in a thread of its own, and the
test drives it with blocking calls that wait on events with timeouts.

`XmppClient.call(coro_fn, *args)` runs a coroutine function on the client's loop and returns
its result; `run(fn, *args)` does the same for a plain function (slixmpp is not thread-safe,
so everything touching the client goes through one of them).  Stanzas arrive in queues:
`messages`, `presences`, and any event named in `watch(...)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import slixmpp

from .brokers import BrokerFactory, BrokerProcess

TIMEOUT = 10.0
DOMAIN = "localhost"
#: users every XMPP test broker has, name -> password
USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw"}
PLUGINS = ("xep_0030", "xep_0199")


def xmpp_config() -> dict[str, Any]:
    """Overrides for broker_factory: the XMPP listener and the test users."""
    return {
        "listeners": {"xmpp": "127.0.0.1:0"},
        "users": [
            {
                "name": name,
                "password": password,
                "permissions": {"/": {"configure": ".*", "write": ".*", "read": ".*"}},
            }
            for name, password in USERS.items()
        ],
    }


class XmppClient:
    """One slixmpp ClientXMPP on a loop in its own thread."""

    def __init__(
        self,
        broker: BrokerProcess,
        jid: str,
        password: str | None = None,
        *,
        plugins: tuple[str, ...] = PLUGINS,
        mechanism: str | None = None,
    ) -> None:
        self.broker = broker
        user = jid.split("@")[0]
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.messages: queue.Queue[slixmpp.Message] = queue.Queue()
        self.presences: queue.Queue[slixmpp.Presence] = queue.Queue()
        self._events: dict[str, queue.Queue[Any]] = {}
        self.client: slixmpp.ClientXMPP = self.run(
            self._make, jid, USERS.get(user, "") if password is None else password, plugins
        )
        if mechanism is not None:
            self.client.plugin["feature_mechanisms"].use_mech = mechanism
        self.session_started = self.watch("session_start")
        self.failed_auth = self.watch("failed_all_auth")
        self.disconnected = self.watch("disconnected")

    def _make(self, jid: str, password: str, plugins: tuple[str, ...]) -> slixmpp.ClientXMPP:
        client = slixmpp.ClientXMPP(jid, password)
        client.ca_certs = str(self.broker.data_dir / "tls" / "self-signed.crt")
        client.enable_direct_tls = False  # the listener speaks STARTTLS
        for plugin in plugins:
            client.register_plugin(plugin)
        client.add_event_handler("message", self.messages.put)
        client.add_event_handler("presence", self.presences.put)
        return client

    # --- running things on the client's loop ---------------------------------------

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(TIMEOUT)

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Await ``fn(*args, **kwargs)`` (a coroutine or a future) on the client's loop."""

        async def awaited() -> Any:
            return await fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(awaited(), self.loop).result(TIMEOUT)

    def watch(self, event_name: str) -> queue.Queue[Any]:
        """A queue that receives the payload of every ``event_name`` event."""
        if event_name not in self._events:
            events: queue.Queue[Any] = queue.Queue()
            self._events[event_name] = events
            self.run(self.client.add_event_handler, event_name, events.put)
        return self._events[event_name]

    # --- the session ----------------------------------------------------------------

    def connect(self, *, presence: bool = True, roster: bool = True) -> XmppClient:
        """Connect, authenticate, bind; then (by default) fetch the roster and send
        initial presence, as a chat client does."""
        assert self.broker.xmpp_port, "no xmpp listener"
        self.run(self.client.connect, self.broker.host, self.broker.xmpp_port)
        wait(self.session_started, "session_start")
        if roster:
            self.call(self.client.get_roster)
        if presence:
            self.run(self.client.send_presence)
        return self

    def send_message(self, to: str, body: str, mtype: str = "chat") -> None:
        self.run(self.client.send_message, mto=to, mbody=body, mtype=mtype)

    def next_message(self, timeout: float = TIMEOUT) -> slixmpp.Message:
        return wait(self.messages, "message", timeout)

    def next_presence(self, timeout: float = TIMEOUT) -> slixmpp.Presence:
        return wait(self.presences, "presence", timeout)

    def iq(self, iq: slixmpp.Iq) -> slixmpp.Iq:
        """Send an iq built on this client and return the reply (IqError on error)."""
        return self.call(iq.send)

    @property
    def jid(self) -> slixmpp.JID:
        return self.client.boundjid

    def close(self) -> None:
        """Disconnect and stop the loop; closing again does nothing."""
        if not self.loop.is_running():
            return
        if self.client.transport is not None:
            self.run(self.client.disconnect)
            with contextlib.suppress(AssertionError):
                wait(self.disconnected, "disconnected")
        self.call(_cancel_tasks)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)


async def _cancel_tasks() -> None:
    """Cancel what slixmpp left running on this loop, so the loop stops clean."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def wait(events: queue.Queue[Any], what: str, timeout: float = TIMEOUT) -> Any:
    try:
        return events.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no {what} within {timeout} s") from None


class XmppClients:
    """Opens slixmpp clients and closes them all at teardown."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        self._open: list[XmppClient] = []

    def unconnected(self, jid: str, password: str | None = None, **kwargs: Any) -> XmppClient:
        client = XmppClient(self.broker, jid, password, **kwargs)
        self._open.append(client)
        return client

    def login(self, jid: str, **kwargs: Any) -> XmppClient:
        """A connected client for ``jid`` (``user@localhost/resource``)."""
        presence = kwargs.pop("presence", True)
        roster = kwargs.pop("roster", True)
        return self.unconnected(jid, **kwargs).connect(presence=presence, roster=roster)

    def close_all(self) -> None:
        for client in self._open:
            client.close()


@pytest.fixture
def xmpp_broker(broker_factory: BrokerFactory) -> BrokerProcess:
    """A fresh broker with the XMPP listener and the users of ``USERS``."""
    return broker_factory(xmpp_config())


@pytest.fixture
def xmpp(xmpp_broker: BrokerProcess) -> Iterator[XmppClients]:
    pool = XmppClients(xmpp_broker)
    yield pool
    pool.close_all()
