"""The server runtime: opens the store, recovers the core, binds listeners, and wires each
listener to its protocol front end.  This is the one module that knows every protocol."""

from __future__ import annotations

import gc
import ipaddress
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from broker import sysinfo, tls
from broker.acl import TopicACL
from broker.alarms import ResourceMonitor, total_memory
from broker.auth import UserDB
from broker.config import Config, ConfigError
from broker.core import Broker
from broker.http import api, dashboard, health, metrics
from broker.http.app import HttpApp, Request
from broker.http.server import HttpListener
from broker.http.server import serve as serve_http
from broker.http.websocket import WebSocket
from broker.log import event, setup_logging
from broker.store.sqlite import SqliteStore
from broker.ticker import Ticker
from protocols.amqp.frontend import AMQPFrontEnd
from protocols.amqp.server import serve as serve_amqp
from protocols.amqp.server import shut_down as shut_down_amqp
from protocols.mqtt.frontend import MQTTFrontEnd
from protocols.mqtt.server import housekeeping as mqtt_housekeeping
from protocols.mqtt.server import serve as serve_mqtt
from protocols.mqtt.server import shut_down as shut_down_mqtt
from protocols.websocket import server as native_websocket
from protocols.xmpp.connection import StreamSettings
from protocols.xmpp.frontend import XMPPFrontEnd
from protocols.xmpp.server import serve as serve_xmpp
from protocols.xmpp.server import shut_down as shut_down_xmpp
from protocols.xmpp.upload import web as upload_web
from protocols.xmpp.upload.service import PATH as UPLOAD_PATH
from protocols.xmpp.upload.service import UploadService
from protocols.xmpp.upload.slots import Limits as UploadLimits
from protocols.xmpp.websocket import serve_websocket as serve_xmpp_websocket

log = logging.getLogger("broker")

#: How long connections get to close on their own at shutdown.
SHUTDOWN_GRACE = 2.0

Handler = Callable[[trio.abc.Stream, str, bool], Awaitable[None]]


def peer_of(stream: trio.abc.Stream) -> tuple[str, bool]:
    """(printable peer address, whether it is loopback) for a TCP or TLS stream."""
    sock = _socket_of(stream)
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "unknown", False
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return f"{host}:{port}", loopback


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket


class Server:
    def __init__(self, config: Config, reload: Callable[[], Config] | None = None) -> None:
        """``reload`` reads the configuration again (SIGHUP)."""
        self.config = config
        self._reload = reload
        self.data_dir = Path(config.store.data_dir)
        self.addresses: dict[str, tuple[str, int]] = {}
        #: the store is open and every listener bound (/readyz)
        self.ready = False
        self.store = SqliteStore(self.data_dir)
        self.users = UserDB(
            allow_anonymous=config.auth.allow_anonymous,
            guest_loopback_only=config.auth.guest_loopback_only,
        )
        self.broker = Broker(self.store, self.users, TopicACL(config.acl))
        self.broker.monitor = ResourceMonitor(self.broker.alarms, self.data_dir, 0, 0)
        self._apply_limits(config)
        #: HTTP file upload (XEP-0363), once run() has loaded its files
        self.uploads: UploadService | None = None

    def _apply_limits(self, config: Config) -> None:
        """The settings that may change at run time (SIGHUP): connection and resource
        limits."""
        limits = config.limits
        self.broker.max_connections_per_user = limits.max_connections_per_user
        monitor = self.broker.monitor
        assert monitor is not None
        monitor.memory_limit = int(limits.memory_high_watermark * total_memory())
        monitor.disk_limit = limits.disk_free_limit_mb * 1_000_000

    async def _reload_on_hangup(self) -> None:
        """SIGHUP reads the config file again and applies its limits (other settings need
        a restart), as Mosquitto reloads on SIGHUP."""
        assert self._reload is not None
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _ in signals:
                try:
                    config = self._reload()
                except ConfigError as exc:
                    event(log, logging.WARNING, "config reload failed", error=str(exc))
                    continue
                self._apply_limits(config)
                assert self.broker.monitor is not None
                self.broker.monitor.check()  # alarms follow the new limits before we say so
                event(log, logging.INFO, "config reloaded")

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until SIGINT/SIGTERM (or cancellation), then shut down in order: stop
        accepting, close connections, commit what the store holds."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.broker.restore(await self.store.open())
        self.users.on_change = self.store.put_user
        self.users.ensure_default_users()
        self.users.apply_config(self.config.users)
        mqtt = MQTTFrontEnd(self.broker, self.config.mqtt)
        amqp = AMQPFrontEnd(self.broker, self.config.limits.amqp_frame_max)
        xmpp = XMPPFrontEnd(self.broker, self._xmpp_settings(), tls_available=True)
        xmpp.pubsub.create_nodes = self.config.xmpp.pubsub_create_nodes
        self.uploads = self._upload_service()
        try:
            async with trio.open_nursery() as core:
                await core.start(self.store.run)
                await core.start(self.broker.run)
                async with trio.open_nursery() as listeners:
                    await self._listen(listeners, mqtt, amqp, xmpp)
                    listeners.start_soon(mqtt_housekeeping, mqtt)
                    if self._reload is not None:
                        listeners.start_soon(self._reload_on_hangup)
                    if self.config.mqtt.sys_interval:
                        listeners.start_soon(
                            sysinfo.run, self.broker, self.config.mqtt.sys_interval
                        )
                    self.ready = True
                    event(log, logging.INFO, "ready", data_dir=str(self.data_dir))
                    task_status.started(self)
                    await _wait_for_signal()
                    event(log, logging.INFO, "shutting down")
                    async with trio.open_nursery() as closing:
                        closing.start_soon(shut_down_mqtt, mqtt, SHUTDOWN_GRACE)
                        closing.start_soon(shut_down_amqp, amqp, SHUTDOWN_GRACE)
                        closing.start_soon(shut_down_xmpp, xmpp, SHUTDOWN_GRACE)
                    listeners.cancel_scope.cancel()
                await self.store.sync()
                core.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.store.close()
            event(log, logging.INFO, "stopped")

    def _xmpp_settings(self) -> StreamSettings:
        limits = self.config.limits
        return StreamSettings(
            domain=self.config.xmpp.domain.lower(),
            max_stanza_size=limits.xmpp_max_stanza_size,
            max_depth=limits.xml_max_depth,
            resume_timeout=self.config.xmpp.resume_timeout,
            registration=self.config.xmpp.registration,
            ping_interval=self.config.xmpp.ping_interval,
            ping_timeout=self.config.xmpp.ping_timeout,
        )

    async def _listen(
        self, nursery: trio.Nursery, mqtt: MQTTFrontEnd, amqp: AMQPFrontEnd, xmpp: XMPPFrontEnd
    ) -> None:
        interval = self.config.mqtt.read_coalesce_us / 1e6
        ticker = Ticker(interval) if interval else None
        if ticker is not None:
            nursery.start_soon(ticker.run)

        async def mqtt_handler(stream: trio.abc.Stream, peer: str, loopback: bool) -> None:
            await serve_mqtt(mqtt, stream, peer=peer, peer_loopback=loopback, ticker=ticker)

        await self._open("mqtt", mqtt_handler, nursery, tls_context=None)
        if self.config.listener("mqtts") is not None:
            await self._open("mqtts", mqtt_handler, nursery, tls_context=self._tls_context())

        async def amqp_handler(stream: trio.abc.Stream, peer: str, loopback: bool) -> None:
            await serve_amqp(amqp, stream, peer=peer, peer_loopback=loopback)

        await self._open("amqp", amqp_handler, nursery, tls_context=None)
        if self.config.listener("amqps") is not None:
            await self._open("amqps", amqp_handler, nursery, tls_context=self._tls_context())

        starttls = self._tls_context()

        async def xmpp_handler(stream: trio.abc.Stream, peer: str, loopback: bool) -> None:
            await serve_xmpp(xmpp, stream, peer=peer, peer_loopback=loopback, tls=starttls)

        async def xmpps_handler(stream: trio.abc.Stream, peer: str, loopback: bool) -> None:
            await serve_xmpp(xmpp, stream, peer=peer, peer_loopback=loopback, tls=None, secure=True)

        await self._open("xmpp", xmpp_handler, nursery, tls_context=None)
        if self.config.listener("xmpps") is not None:
            await self._open("xmpps", xmpps_handler, nursery, tls_context=starttls)

        app = self._http_app(mqtt, xmpp, ticker)
        http = HttpListener(app, self.config.limits.ws_max_message_size)

        async def http_handler(stream: trio.abc.Stream, peer: str, loopback: bool) -> None:
            await serve_http(http, stream, peer=peer, peer_loopback=loopback)

        await self._open("http", http_handler, nursery, tls_context=self._http_tls())
        if self.uploads is not None and "http" in self.addresses:
            self.uploads.install(xmpp, self._upload_url())
            nursery.start_soon(self.uploads.run)

    def _http_app(self, mqtt: MQTTFrontEnd, xmpp: XMPPFrontEnd, ticker: Ticker | None) -> HttpApp:
        """The HTTP listener's services: health, and the WebSocket endpoints of the front
        ends (MQTT over WebSocket on /mqtt, subprotocol ``mqtt``; XMPP on /xmpp, subprotocol
        ``xmpp``, RFC 7395)."""
        app = HttpApp()
        health.install(app, lambda: self.ready)
        metrics.install(app, self.broker)
        api.install(app, self.broker, lambda: self.addresses)
        dashboard.install(app)

        async def mqtt_over_websocket(websocket: WebSocket, request: Request) -> None:
            await serve_mqtt(
                mqtt,
                websocket.byte_stream(),
                peer=request.peer,
                peer_loopback=request.peer_loopback,
                ticker=ticker,
            )

        app.websocket("/mqtt", ("mqtt",), mqtt_over_websocket)

        async def xmpp_over_websocket(websocket: WebSocket, request: Request) -> None:
            await serve_xmpp_websocket(
                xmpp,
                websocket,
                peer=request.peer,
                peer_loopback=request.peer_loopback,
                secure=self.config.tls_configured,  # wss, as _http_tls decides
            )

        app.websocket("/xmpp", ("xmpp",), xmpp_over_websocket)
        app.websocket(
            "/ws",
            native_websocket.SUBPROTOCOLS,
            native_websocket.endpoint(self.broker, self.config.limits.ws_auth_timeout),
        )
        if self.uploads is not None:
            handler, precheck = upload_web.handler(self.uploads), upload_web.precheck(self.uploads)
            max_body = self.uploads.limits.max_file_size
            app.route(UPLOAD_PATH, handler, max_body=max_body, precheck=precheck)
        return app

    def _upload_service(self) -> UploadService | None:
        """HTTP file upload (XEP-0363) when it is on and so is the HTTP listener that
        serves it; its files are under the data dir."""
        cfg = self.config.xmpp
        if not cfg.upload or self.config.listener("http") is None:
            return None
        limits = UploadLimits(cfg.upload_max_file_size, cfg.upload_quota, cfg.upload_expire_after)
        service = UploadService(self.data_dir / "uploads", limits)
        service.load()
        return service

    def _upload_url(self) -> str:
        """Where uploaded files are: as configured, or the HTTP listener's bound address
        (the XMPP domain when it is bound to every interface)."""
        if self.config.xmpp.upload_url:
            return self.config.xmpp.upload_url
        host, port = self.addresses["http"]
        if ipaddress.ip_address(host).is_unspecified:
            host = self.config.xmpp.domain
        elif ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.config.tls_configured else "http"
        return f"{scheme}://{host}:{port}"

    def _http_tls(self) -> ssl.SSLContext | None:
        """HTTPS when a certificate is configured (the self-signed one is for XMPP)."""
        return self._tls_context() if self.config.tls_configured else None

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self.config.tls
        if cfg.cert and cfg.key:
            return tls.server_context(cfg.cert, cfg.key)
        cert, key = tls.ensure_self_signed(self.data_dir, self.config.xmpp.domain)
        return tls.server_context(cert, key)

    async def _open(
        self,
        name: str,
        handler: Handler,
        nursery: trio.Nursery,
        tls_context: ssl.SSLContext | None,
    ) -> None:
        address = self.config.listener(name)
        if address is None:
            return
        host, port = address
        tcp = await trio.open_tcp_listeners(port, host=host)
        bound = tcp[0].socket.getsockname()
        self.addresses[name] = (bound[0], bound[1])
        listeners: list[trio.abc.Listener] = list(tcp)
        if tls_context is not None:
            listeners = [trio.SSLListener(t, tls_context, https_compatible=False) for t in tcp]

        async def accept(stream: trio.abc.Stream) -> None:
            sock = _socket_of(stream)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer, loopback = peer_of(stream)
            await handler(stream, peer, loopback)

        nursery.start_soon(trio.serve_listeners, accept, listeners)
        event(log, logging.INFO, "listening", protocol=name, address=_format(bound))


def _format(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


def tune_gc() -> None:
    """Collect young objects less often: a broker allocates several short-lived objects per
    message, and with the default threshold (700) the collector runs every few hundred
    messages, rescanning every live connection, queue and session each time it reaches the
    older generations.  Nearly all garbage here is freed by reference counting anyway."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def serve(config: Config, reload: Callable[[], Config] | None = None) -> None:
    setup_logging(config.log.level, config.log.format)
    tune_gc()
    trio.run(Server(config, reload).run)
