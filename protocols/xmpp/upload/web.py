"""The HTTP side of file upload (XEP-0363 section 5): PUT fills a slot once, GET and HEAD
fetch a stored file by its URL, OPTIONS answers browsers' CORS preflight (web clients
upload from other origins).

Files are served so that one cannot act as a page of the broker's origin (the dashboard
and management API live there): a sandboxing Content-Security-Policy, no MIME sniffing,
and an attachment disposition for anything but media and plain text.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from broker.http.app import Handler, Precheck, Request, Response
from protocols.xmpp.upload.service import PATH, UploadService
from protocols.xmpp.upload.slots import PutRefused, StoredFile

CORS = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "GET, HEAD, PUT, OPTIONS"),
    ("access-control-allow-headers", "Authorization, Content-Type"),
]
SAFE = [
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'; sandbox"),
    ("x-content-type-options", "nosniff"),
]
INLINE = ("image/", "audio/", "video/", "text/plain")


def handler(service: UploadService) -> Handler:
    """The handler of ``PATH`` on the HTTP listener."""

    async def handle(request: Request) -> Response:
        return await _handle(service, request)

    return handle


def precheck(service: UploadService) -> Precheck:
    """What refuses a PUT on its headers, before its body arrives: a client without the
    slot's secret cannot make the broker take in a body."""

    def check(request: Request) -> Response | None:
        if request.method != "PUT" or (where := _where(request)) is None:
            return None
        declared = request.headers.get("content-length")
        try:
            service.uploads.check(
                where[0],
                request.headers.get("authorization"),
                request.headers.get("content-type"),
                int(declared) if declared is not None else None,
                service.now(),
            )
        except PutRefused as refused:
            return _text(str(refused), refused.status)
        return None

    return check


def _where(request: Request) -> tuple[str, str] | None:
    """(token, file name) of a request's path, if it has the shape of one."""
    parts = request.path.removeprefix(PATH).split("/")
    return (parts[0], unquote(parts[1])) if len(parts) == 2 else None


async def _handle(service: UploadService, request: Request) -> Response:
    if (where := _where(request)) is None:
        return _text("not found", 404)
    token, name = where
    if request.method == "OPTIONS":
        return Response(204, headers=list(CORS))
    if request.method == "PUT":
        return await _put(service, request, token)
    if request.method in ("GET", "HEAD"):
        return await _get(service, request, token, name)
    response = _text("method not allowed", 405)
    response.headers.append(("allow", "GET, HEAD, PUT, OPTIONS"))
    return response


async def _put(service: UploadService, request: Request, token: str) -> Response:
    content_type = request.headers.get("content-type")
    try:
        slot = service.uploads.claim(
            token,
            request.headers.get("authorization"),
            content_type,
            len(request.body),
            service.now(),
        )
    except PutRefused as refused:
        return _text(str(refused), refused.status)
    if await service.store(slot, content_type, request.body) is None:
        return _text("the file could not be stored", 500)
    return _text("created", 201)


async def _get(service: UploadService, request: Request, token: str, name: str) -> Response:
    stored = service.uploads.file(token, service.now())
    if stored is None or stored.filename != name:
        return _text("not found", 404)
    headers = [*CORS, *SAFE, ("content-disposition", _disposition(stored))]
    if request.method == "HEAD":
        headers.append(("content-length", str(stored.size)))
        return Response(200, b"", stored.content_type, headers)
    try:
        body = await service.read(stored)
    except OSError:
        return _text("not found", 404)
    return Response(200, body, stored.content_type, headers)


def _disposition(stored: StoredFile) -> str:
    kind = "inline" if stored.content_type.lower().startswith(INLINE) else "attachment"
    return f"{kind}; filename*=UTF-8''{quote(stored.filename, safe='')}"


def _text(text: str, status: int) -> Response:
    return Response(status, f"{text}\n".encode(), headers=list(CORS))
