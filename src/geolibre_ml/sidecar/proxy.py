"""The streaming forwarder: a request goes to the model server as it arrives, its answer comes
back as it is produced, and neither is ever held whole in the sidecar's memory.

Status code, body and content type pass through unchanged. The sidecar answers by itself
only when the backend cannot: 413 (upload over the limit: refused up front on
``Content-Length``, or while streaming when the client sent none), 429 (too many
segmentations in flight), 503 (no backend reachable or startable), 502 (the backend failed
mid-request), 504 (the backend stayed silent past the proxy timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .backend import Target
from .config import MIB
from .gateway import Gateway, Unavailable

log = logging.getLogger("geolibre_ml.sidecar")

#: Request headers passed to the backend; the rest (cookies, the sidecar's token, Origin,
#: hop-by-hop headers) stay here.
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "content-type",
        "content-length",
        "if-modified-since",
        "if-none-match",
        "last-event-id",
        "user-agent",
        "x-request-id",
    }
)
#: Response headers not passed back: hop-by-hop ones, and those the sidecar sets itself.
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"date",
        b"server",
    }
)


class UploadTooLarge(Exception):
    """The request body went past the upload limit while streaming."""


class ClientGone(Exception):
    """The client disconnected before the exchange was over."""


class Slots:
    """A count of segmentations in flight, with a ceiling (single event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def acquire(self) -> bool:
        """Take a slot; ``False`` when all are taken."""
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        """Give a slot back."""
        self.used = max(0, self.used - 1)


class Upload:
    """The request body as an async iterator of chunks, counted against the upload limit."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.received = 0
        self.finished = anyio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives; raise :class:`UploadTooLarge` past the limit."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if chunk:
                self.received += len(chunk)
                if self.received > self.limit:
                    raise UploadTooLarge
                yield chunk
            if not message.get("more_body", False):
                self.finished.set()
                return


def error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An answer of the sidecar's own, in the model server's style: ``{"detail": ...}``."""
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class UpstreamResponse(Response):
    """The backend's answer, relayed chunk by chunk with its status and headers.

    When the client leaves, the backend's answer is closed at once. When the backend fails
    after its headers went out, the client's connection is closed without a proper end, so
    that it sees a truncated answer rather than a short one that looks complete.

    ``on_close`` (the concurrency slot's release) runs once, as soon as the backend's answer
    has been received whole and before its last bytes go to the client: a client that starts
    its next request the moment it has read this answer must find the slot free.
    """

    def __init__(self, upstream: httpx.Response, on_close: Callable[[], None] | None) -> None:
        self.upstream = upstream
        self.on_close = on_close
        self.status_code = upstream.status_code
        self.background = None
        self.raw_headers = [
            (key.lower(), value)
            for key, value in upstream.headers.raw
            if key.lower() not in DROPPED_RESPONSE_HEADERS
            and not key.lower().startswith(b"access-control-")
        ]
        length = upstream.headers.get("content-length", "")
        #: Bytes the answer declares (``None``: it ends when the backend says so).
        self.declared = int(length) if length.isdigit() else None

    def _done(self) -> None:
        if self.on_close is not None:
            on_close, self.on_close = self.on_close, None
            on_close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with cancelled_on_disconnect(receive):
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
                relayed = 0
                try:
                    async for chunk in self.upstream.aiter_raw():
                        relayed += len(chunk)
                        if self.declared is not None and relayed >= self.declared:
                            # With a Content-Length the client has the whole answer at
                            # this chunk's last byte.
                            self._done()
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except httpx.HTTPError as exc:
                    log.warning(
                        "The model server failed while sending its answer (%s); the answer to "
                        "the client is cut short.",
                        type(exc).__name__,
                    )
                    return
                self._done()  # before the end of a chunked answer reaches the client
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):
                await self.upstream.aclose()
            self._done()


@contextlib.asynccontextmanager
async def cancelled_on_disconnect(
    receive: Receive, after: anyio.Event | None = None
) -> AsyncIterator[Disconnect]:
    """Run the block, cancelling it when the client disconnects.

    ``receive`` is only listened to once ``after`` is set (the request body has been read
    whole), so that the watch never competes with the code reading the body.
    """
    state = Disconnect()
    scope = anyio.CancelScope()

    async def watch() -> None:
        if after is not None:
            await after.wait()
        while (await receive())["type"] != "http.disconnect":
            pass
        state.gone = True
        scope.cancel()

    watcher = asyncio.create_task(watch())
    try:
        with scope:
            yield state
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


class Disconnect:
    """Whether the client has gone (set by :func:`cancelled_on_disconnect`)."""

    gone = False


class Proxy:
    """Forwards requests to the gateway's backend, behind the size and concurrency guards."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.slots = Slots(self.settings.max_segmentations)

    async def forward(self, request: Request, path: str, *, segmentation: bool) -> Response:
        """Send ``request`` to the backend's ``path`` and relay its answer.

        Args:
            request: the client's request; its body is streamed, never read whole.
            path: the backend path, e.g. ``/segment/text`` (the query string is kept).
            segmentation: whether the request counts against the segmentations in flight.
        """
        limit = self.settings.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return self._too_large(request)
        if segmentation:
            if not self.slots.acquire():
                log.warning(
                    "%s %s refused: %d segmentations already in flight.",
                    request.method,
                    request.url.path,
                    self.slots.limit,
                )
                return error(
                    429,
                    f"{self.slots.limit} segmentations are already running, the most the "
                    "sidecar takes at once. Try again when one has finished.",
                    {"Retry-After": "5"},
                )
            log.info(
                "%s %s: %d of %d segmentations in flight.",
                request.method,
                request.url.path,
                self.slots.used,
                self.slots.limit,
            )
        release = self.slots.release if segmentation else None
        try:
            response = await self._forward(request, path)
        except BaseException:
            if release:
                release()
            raise
        if isinstance(response, UpstreamResponse):
            response.on_close = release  # the slot is held until the answer is delivered
        elif release:
            release()
        return response

    async def _forward(self, request: Request, path: str) -> Response:
        try:
            target = await self.gateway.target()
        except Unavailable as exc:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return error(503, str(exc))
        has_body = request.headers.get("content-length", "0") != "0" or (
            "chunked" in request.headers.get("transfer-encoding", "").lower()
        )
        upload = Upload(request.receive, self.settings.max_upload_bytes) if has_body else None
        for attempt in (1, 2):
            outgoing = self._build(request, target, path, upload)
            try:
                upstream = await self._send(outgoing, request.receive, upload)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing of the upload has been read yet, so one retry is safe: a launched
                # model server that stopped listening is restarted for it.
                untouched = upload is None or upload.received == 0
                if attempt == 1 and untouched and await self.gateway.recover(target):
                    try:
                        target = await self.gateway.target()
                    except Unavailable as again:
                        return error(503, str(again))
                    continue
                detail = self.gateway.unreachable(target, _reason(exc))
                log.warning("%s %s: %s", request.method, request.url.path, detail)
                return error(503, detail)
            except UploadTooLarge:
                return self._too_large(request)
            except ClientGone:
                log.info("%s %s: the client left.", request.method, request.url.path)
                return Response(status_code=499)
            except httpx.TimeoutException:
                detail = (
                    f"The model server at {target.shown} did not answer within "
                    f"{self.settings.proxy_timeout:g} s (GEOLIBRE_ML_PROXY_TIMEOUT). Try a "
                    "smaller image or area, or raise the timeout."
                )
                log.warning("%s %s: %s", request.method, request.url.path, detail)
                return error(504, detail)
            except httpx.HTTPError as exc:
                if self.gateway.launcher is not None and self.gateway.launcher.closing:
                    detail = "The sidecar is shutting down; its model server was stopped."
                    log.info("%s %s: %s", request.method, request.url.path, detail)
                    return error(503, detail)
                detail = (
                    f"The model server at {target.shown} failed during the request "
                    f"({_reason(exc)}): it may have crashed or been stopped; see the sidecar's "
                    "log."
                )
                if self.gateway.launcher is not None:
                    detail += " It is started again on the next request."
                log.warning("%s %s: %s", request.method, request.url.path, detail)
                return error(502, detail)
            return UpstreamResponse(upstream, None)
        raise AssertionError("unreachable")

    def _build(
        self, request: Request, target: Target, path: str, upload: Upload | None
    ) -> httpx.Request:
        headers = [
            (key, value)
            for key, value in request.headers.items()
            if key in FORWARDED_REQUEST_HEADERS
        ]
        if not any(key == "accept-encoding" for key, _ in headers):
            headers.append(("accept-encoding", "identity"))  # relay bytes as the client wants
        headers += [
            ("x-forwarded-host", request.headers.get("host", "")),
            ("x-forwarded-proto", request.url.scheme),
            ("x-forwarded-prefix", "/ml"),
        ]
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = httpx.URL(target.url(path), params=list(target.params))
        if query:
            url = url.copy_with(query=(url.query + b"&" if url.query else b"") + query.encode())
        return self.gateway.client.build_request(
            request.method,
            url,
            headers=headers,
            content=upload.chunks() if upload is not None else None,
        )

    async def _send(
        self, outgoing: httpx.Request, receive: Receive, upload: Upload | None
    ) -> httpx.Response:
        """Send ``outgoing``; give up (``ClientGone``) if the client leaves while we wait."""
        response: httpx.Response | None = None
        async with cancelled_on_disconnect(
            receive, upload.finished if upload is not None else None
        ) as client:
            response = await self.gateway.client.send(outgoing, stream=True)
        if client.gone or response is None:
            if response is not None:
                await response.aclose()
            raise ClientGone
        return response

    def _too_large(self, request: Request) -> Response:
        limit = self.settings.max_upload_bytes
        where = f"{request.method} {request.url.path}"
        log.warning("%s refused: the upload is over %g MiB.", where, limit / MIB)
        return error(
            413,
            f"The upload is larger than the sidecar's limit of {limit / MIB:g} MiB. Send a "
            "smaller image (crop it, or drop bands you do not need), or send it to the model "
            "server directly.",
        )


def _reason(exc: BaseException) -> str:
    """A short, credential-free reason for an HTTP failure."""
    if isinstance(exc, httpx.RemoteProtocolError):
        return "it closed the connection without a complete answer"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "the connection broke"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return "connection refused or host unreachable"
    return type(exc).__name__
