"""Liveness and readiness for orchestrators: ``/healthz`` answers while the process
serves; ``/readyz`` once the store is open and every listener is bound."""

from __future__ import annotations

from collections.abc import Callable

from broker.http.app import HttpApp, Request, Response


def install(app: HttpApp, ready: Callable[[], bool]) -> None:
    def healthz(request: Request) -> Response:
        return Response.text("ok\n")

    def readyz(request: Request) -> Response:
        return Response.text("ready\n") if ready() else Response.text("starting\n", 503)

    app.route("/healthz", healthz)
    app.route("/readyz", readyz)
