"""Uploads: a size cap enforced while the body streams in, and a private directory per
request that is removed on every path.

Starlette parses the multipart body before an endpoint runs, spooling the file part
to an anonymous temporary file (no name in the file system, gone when closed). The
endpoint then copies it into a fresh directory under the system temporary folder
(``TMPDIR``) so that GDAL can open it by name; that directory is removed when the
request ends, whether it succeeded, failed or the client went away.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CHUNK = 1024 * 1024

#: Default cap on a request body, in MiB; ``GEOLIBRE_ML_MAX_UPLOAD_MB`` overrides it.
DEFAULT_MAX_UPLOAD_MB = 2048


def max_upload_bytes_from_env() -> int:
    """The upload cap in bytes: ``GEOLIBRE_ML_MAX_UPLOAD_MB`` (MiB) or the default.

    A value that is not a positive number falls back to the default rather than
    removing the cap.
    """
    raw = os.environ.get("GEOLIBRE_ML_MAX_UPLOAD_MB", "").strip()
    try:
        value = float(raw)
    except ValueError:
        value = DEFAULT_MAX_UPLOAD_MB
    if not (value > 0 and math.isfinite(value)):
        value = DEFAULT_MAX_UPLOAD_MB
    return int(value * 1024 * 1024)


def too_large_detail(limit: int) -> str:
    """The 413 detail for a body over ``limit`` bytes."""
    return (
        f"The upload is larger than this server accepts ({limit / 1024 / 1024:,.0f} MiB). "
        "Crop or compress the image (e.g. gdal_translate -co COMPRESS=DEFLATE), or raise "
        "GEOLIBRE_ML_MAX_UPLOAD_MB on the server."
    )


class UploadTooLarge(HTTPException):
    """Raised from the request stream once the body passes the cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_detail(limit))


class UploadLimit:
    """ASGI middleware capping request bodies at ``max_bytes``.

    A ``Content-Length`` over the cap is refused before any of the body is read.
    Otherwise (chunked uploads, or a length that lies) the bytes are counted as they
    arrive and the stream fails with a 413 as soon as the count passes the cap, so
    nothing larger is ever written to disk.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        length = _content_length(scope)
        if length is not None and length > limit:
            # Closing the connection tells the client to stop sending the body.
            response = JSONResponse(
                {"detail": too_large_detail(limit)},
                status_code=413,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise UploadTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except UploadTooLarge as exc:
            # Reached only where the stream was read outside FastAPI's request handling.
            if started:
                raise
            response = JSONResponse(
                {"detail": exc.detail}, status_code=413, headers={"Connection": "close"}
            )
            await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def display_name(filename: str | None) -> str:
    """The upload's base name as the client sent it (for ``source`` and messages)."""
    return Path((filename or "").replace("\\", "/")).name or "upload"


def safe_name(filename: str | None) -> str:
    """The upload's base name, reduced to something safe to create on disk."""
    base = Path((filename or "").replace("\\", "/")).name
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in base).lstrip(".")
    return keep[:120] or "upload"


@dataclass(frozen=True)
class SavedUpload:
    """An upload on disk: its path in the request's private folder, and the digest of
    its bytes (the key under which prepared windows of the image are cached)."""

    path: Path
    digest: str


@contextlib.asynccontextmanager
async def saved_upload(upload: UploadFile) -> AsyncIterator[SavedUpload]:
    """Copy ``upload`` into a fresh temporary directory; remove it when the block exits.

    The directory is private to the request (``mkdtemp``: mode 0700, unique name), so
    concurrent requests with the same file name never collide. The bytes are hashed
    while they are written, at no extra read.
    """
    workdir = Path(tempfile.mkdtemp(prefix="geolibre-ml-"))
    try:
        path = workdir / safe_name(upload.filename)
        digest = await run_in_threadpool(_copy, upload, path)
        yield SavedUpload(path, digest)
    finally:
        # Synchronous on purpose: it must run even when the request task is being
        # cancelled, and removing one file is quick.
        shutil.rmtree(workdir, ignore_errors=True)


def _copy(upload: UploadFile, path: Path) -> str:
    # The spooled file is read synchronously in a worker thread: one hop for the whole
    # copy instead of one per chunk.
    source = upload.file
    source.seek(0)
    digest = hashlib.blake2b(digest_size=16)
    with path.open("wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()
