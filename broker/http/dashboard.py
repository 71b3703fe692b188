"""The operator's dashboard at ``/``: static HTML, CSS and JavaScript shipped in
``broker/http/static`` and served as they are (no build step).

The page does its work in the browser: it logs in with HTTP Basic against the management
API (``/api/``), draws message rates and queue depths from it, and watches topics over the
native WebSocket protocol (``/ws``). The files are read once at start; they are small.
"""

from __future__ import annotations

from pathlib import Path

from broker.http.app import HttpApp, Request, Response

STATIC_DIR = Path(__file__).parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

#: the page loads nothing from elsewhere and talks only to this broker
SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
]


def load(directory: Path = STATIC_DIR) -> dict[str, Response]:
    """One ready response per file, by URL path; ``/`` is ``index.html``."""
    files: dict[str, Response] = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        response = Response(200, path.read_bytes(), content_type, list(SECURITY_HEADERS))
        files[f"/static/{path.name}"] = response
        if path.name == "index.html":
            files["/"] = response
    return files


def install(app: HttpApp) -> None:
    files = load()

    def serve(request: Request) -> Response:
        if request.method != "GET":
            return Response(405, b"method not allowed\n", headers=[("Allow", "GET")])
        return files.get(request.path) or Response.text("not found\n", 404)

    app.route("/", serve)
    app.route("/static/", serve)
