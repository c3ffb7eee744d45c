"""Library errors as HTTP answers: a status code and a ``detail`` that says what to fix."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from geolibre_ml.segment.errors import (
    Cancelled,
    ImageTooLarge,
    InvalidRequest,
    ModelUnavailable,
    NoObjectsFound,
    SegmentError,
    UnreadableImage,
    UnsupportedPrompt,
)

STATUS: dict[type[SegmentError], int] = {
    InvalidRequest: 400,
    UnreadableImage: 400,
    NoObjectsFound: 404,
    Cancelled: 409,
    ImageTooLarge: 413,
    UnsupportedPrompt: 422,
    ModelUnavailable: 503,
}


def status_for(error: SegmentError) -> int:
    """The HTTP status for a library error (its nearest mapped base class)."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "Invalid request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    """Register the handlers that turn errors into answers."""

    @app.exception_handler(SegmentError)
    async def segment_error(_: Request, exc: SegmentError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)
