"""Errors as HTTP answers: a status code and a ``detail`` that says what to fix.

Three layers, from the most to the least specific:

1. Library errors (:class:`~geolibre_ml.segment.errors.SegmentError`) carry a message
   written for the user and map to a 4xx status by class.
2. Exceptions GDAL, PROJ or the numerical stack raise on an odd uploaded file are not
   bugs of ours but of the file; :func:`as_segment_error` turns them into library errors
   (400 or 413) with what GDAL said.
3. Anything else is a genuine bug: :class:`LastResort` logs the traceback and answers 500
   with a generic detail, so no internal text reaches the client and the server goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geolibre_ml.segment.errors import (
    Cancelled,
    ImageTooLarge,
    InvalidRequest,
    ModelUnavailable,
    NoObjectsFound,
    SegmentError,
    SourceRefused,
    UnreadableImage,
    UnsupportedPrompt,
    clipped,
    gdal_message,
    quoted,
)

from .methods import allowed_methods

log = logging.getLogger("geolibre_ml.modelserver")

STATUS: dict[type[SegmentError], int] = {
    InvalidRequest: 400,
    UnreadableImage: 400,
    NoObjectsFound: 404,
    Cancelled: 409,
    ImageTooLarge: 413,
    UnsupportedPrompt: 422,
    ModelUnavailable: 503,
    SourceRefused: 403,
}

INTERNAL_ERROR = (
    "Internal error in the model server while handling this request. This is a bug, not a "
    "problem with your input; the server log has the details."
)

HEADER_TOO_LONG = (
    "A header of the multipart body is longer than this server reads (4 KB): the file name "
    "is too long, most likely. Rename the file to a shorter name and send it again."
)

# What a client is told for fields it left out, beyond pydantic's "Field required".
_MISSING_HINTS = {
    "file": "upload the image (GeoTIFF, PNG or JPEG) as the multipart/form-data field 'file', "
    "or give its URL or server path as 'source'",
    "prompt": 'name what to find, e.g. prompt=water (or several: prompts=["trees", "water"])',
}


def status_for(error: SegmentError) -> int:
    """The HTTP status for a library error (its nearest mapped base class)."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def as_segment_error(exc: BaseException, name: str) -> SegmentError | None:
    """The library error an exception from reading ``name`` amounts to, or None for a bug.

    GDAL (through rasterio) raises on corrupt tags, truncated strips, impossible
    geotransforms and the like wherever a file is touched, not only where the library
    expects it; PROJ rejects CRS definitions it cannot use. Those are properties of
    the uploaded file, so the client hears about them as a 400 with GDAL's words.
    """
    # Imported here so that importing this module stays cheap (no GDAL at import time).
    from affine import TransformNotInvertibleError
    from pyproj.exceptions import CRSError as ProjCRSError
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import CRSError as RasterioCRSError
    from rasterio.errors import RasterioError

    if isinstance(exc, SegmentError):
        return exc
    if isinstance(exc, MemoryError):
        return ImageTooLarge(
            f"{quoted(name)} needs more memory than this server has free. Crop or downsample it, "
            "or send it with tile_size to process it in pieces."
        )
    if isinstance(exc, (RasterioError, CPLE_BaseError)):
        return UnreadableImage(
            f"{quoted(name)} cannot be read: it must be a GeoTIFF, PNG or JPEG, complete and "
            f"uncorrupted (GDAL said: {clipped(gdal_message(exc))}). Re-export or re-download it."
        )
    if isinstance(exc, (ProjCRSError, RasterioCRSError)):
        return UnreadableImage(
            f"The coordinate reference system of {quoted(name)} cannot be used "
            f"({clipped(gdal_message(exc))}). "
            "Assign a valid CRS (e.g. gdal_edit.py -a_srs EPSG:32633) or remove it."
        )
    if isinstance(exc, TransformNotInvertibleError):
        return UnreadableImage(
            f"The georeferencing of {quoted(name)} is degenerate (its pixels have no size on the "
            "ground). Fix its geotransform (e.g. gdal_edit.py -a_ullr) or remove it."
        )
    return None


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "header")]
        where = ".".join(loc)
        kind = error.get("type", "")
        if where == "file" and kind != "missing":
            parts.append(
                "file must be an uploaded file (a multipart/form-data part with a filename), "
                "not a text field"
            )
        elif kind == "missing" and where in _MISSING_HINTS:
            parts.append(f"{where} is required: {_MISSING_HINTS[where]}")
        elif kind == "missing":
            parts.append(f"{where} is required")
        else:
            msg = error.get("msg", "invalid")
            got = error.get("input")
            shown = (
                f" (got {quoted(got)})" if isinstance(got, (str, int, float)) and got != "" else ""
            )
            parts.append(f"{where}: {msg}{shown}" if where else f"{msg}{shown}")
    return "Invalid request: " + "; ".join(parts) + "."


def _header_too_long(exc: BaseException) -> bool:
    """Whether python-multipart refused a part's header line as too long (4 KB): what a
    very long file name in ``Content-Disposition`` causes."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if "Maximum header size exceeded" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn errors into answers, and the last-resort guard."""

    @app.exception_handler(SegmentError)
    async def segment_error(request: Request, exc: SegmentError) -> JSONResponse:
        status = status_for(exc)
        if isinstance(exc, Cancelled):
            log.info("%s %s: cancelled (%s)", request.method, request.url.path, exc.detail)
        else:
            log.info("%s %s -> %d: %s", request.method, request.url.path, status, exc.detail)
        return _error_response(status, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(422, _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own errors (404 route, 405 method, 400 malformed multipart) keep
        # their status; their detail is made a sentence a client can act on.
        detail = str(exc.detail)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only.
            methods = allowed_methods(request.app, request.scope)
            if methods:
                headers = {**(headers or {}), "Allow": ", ".join(methods)}
                detail = (
                    f"{request.method} is not allowed here: this path answers {', '.join(methods)}."
                )
        if exc.status_code == 400 and _header_too_long(exc):
            detail = HEADER_TOO_LONG
        elif exc.status_code == 400:
            # Raised only while the form is parsed (our own errors are library errors).
            why = "" if detail == "There was an error parsing the body" else f" ({detail})"
            detail = (
                f"The request body could not be read as multipart/form-data{why}: it is "
                "malformed or the upload was interrupted. Send the image as the form field "
                "'file' of a multipart/form-data POST."
            )
        return _error_response(exc.status_code, detail, headers)

    app.add_middleware(LastResort)


class LastResort:
    """ASGI middleware: any exception that escaped the handlers is a bug of ours.

    It is logged once with its traceback and answered 500 with a generic detail
    (when the answer has not started yet); the server keeps serving.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("Unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = _error_response(500, INTERNAL_ERROR)
                await response(scope, receive, send)
