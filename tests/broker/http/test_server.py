"""The HTTP adapter on a real loopback socket, driven by http.client: a handler that
fails unexpectedly gives 500, one log line, and the connection carries on."""

from __future__ import annotations

import http.client
import logging
from functools import partial

import pytest
import trio

from broker.http.app import HttpApp, Request, Response
from broker.http.server import HttpListener, serve


def _boom(request: Request) -> Response:
    raise RuntimeError("a bug")


async def test_unexpected_handler_error_gives_500_and_the_connection_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = HttpApp()
    app.route("/boom", _boom)
    app.route("/ok", lambda request: Response.text("fine\n"))
    listener = HttpListener(app, 1 << 20)

    async def handler(stream: trio.SocketStream) -> None:
        await serve(listener, stream, peer="client", peer_loopback=True)

    def client(port: int) -> list[tuple[int, bytes]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        answers = []
        for path in ("/boom", "/ok"):
            conn.request("GET", path)
            response = conn.getresponse()
            answers.append((response.status, response.read()))
        conn.close()
        return answers

    async with trio.open_nursery() as nursery:
        [tcp] = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = tcp.socket.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="broker.http"):
            answers = await trio.to_thread.run_sync(client, port)
        nursery.cancel_scope.cancel()
    assert answers == [(500, b"internal server error\n"), (200, b"fine\n")]
    assert [r.message for r in caplog.records] == ["http handler failed"]
