"""The sidecar's endpoints: ``/health``, ``/ml/*`` and ``/shutdown``.

The router is built per app (:func:`build_router`), so that the documentation states the
limits the app really has (upload size, segmentations in flight, timeouts), and the
``/ml/segment/*`` routes come from the protocol's table of modes
(:data:`geolibre_ml.protocol.MODES`), with its form fields in the OpenAPI although the body
is streamed to the model server unparsed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask

from geolibre_ml.protocol import MODES, Mode

from .config import MIB, Settings
from .gateway import Gateway
from .proxy import Proxy
from .schemas import ErrorDetail, Health, MlStart, MlStatus, ShuttingDown

log = logging.getLogger("geolibre_ml.sidecar")


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _proxy(request: Request) -> Proxy:
    return request.app.state.proxy


def upload_limit(settings: Settings) -> str:
    """The upload limit in words, e.g. ``100 MiB``."""
    return f"{settings.max_upload_bytes / MIB:g} MiB"


def proxy_errors(settings: Settings) -> dict[int | str, dict[str, Any]]:
    """The answers the sidecar gives by itself on a proxied route, for the OpenAPI."""
    return {
        413: {"model": ErrorDetail, "description": f"Upload over {upload_limit(settings)}."},
        429: {
            "model": ErrorDetail,
            "description": f"{settings.max_segmentations} segmentations already in flight "
            "(`Retry-After: 5`).",
        },
        502: {"model": ErrorDetail, "description": "The model server failed mid-request."},
        503: {
            "model": ErrorDetail,
            "description": "No model server can be reached or started (what to fix).",
        },
        504: {
            "model": ErrorDetail,
            "description": f"The model server stayed silent for {settings.proxy_timeout:g} s "
            "(GEOLIBRE_ML_PROXY_TIMEOUT).",
        },
    }


def segment_description(mode: Mode, settings: Settings) -> str:
    """The description of ``/ml`` + ``mode.path``, with ``settings``' limits."""
    return (
        f"Multipart form (the fields of the model server's `{mode.path}`, below), streamed "
        "unchanged to the model server; its answer (status, headers, body) comes back "
        "unchanged. The sidecar answers by itself only when the model server cannot: 413 for "
        f"an upload over {upload_limit(settings)}, 429 while {settings.max_segmentations} "
        "segmentations are already in flight, 503 when no model server can be reached or "
        "started, 502 when it fails mid-request, 504 when it stays silent for "
        f"{settings.proxy_timeout:g} s."
    )


SEGMENT_ANSWER: dict[str, Any] = {
    "description": "The model server's answer, unchanged: GeoJSON or JSON, a GeoTIFF or a PNG "
    "(per `output_format`); its own errors (400, 404 no objects found, 413, 422, 503) pass "
    "through as they are.",
    "content": {"application/json": {}, "image/tiff": {}, "image/png": {}},
}


def _segment_endpoint(mode: Mode) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await _proxy(request).forward(request, mode.path, segmentation=True)

    endpoint.__doc__ = mode.summary
    return endpoint


async def health() -> Health:
    """Liveness of the sidecar itself (no token needed): ``{"status": "ok"}``."""
    return Health()


async def ml_status(request: Request) -> MlStatus:
    """Whether segmentation is available, the model to default to, and the backend's models."""
    return await _gateway(request).status()


async def ml_start(request: Request, response: Response) -> MlStart:
    """Launch the model server now (the dialog's **Start server**); answers like ``/ml/status``.

    503, with the reason in ``message`` and ``detail``, when it cannot start.
    """
    answer = await _gateway(request).start()
    response.status_code = 200 if answer.available else 503
    return answer


async def ml_models(request: Request) -> Response:
    """The model server's ``/models`` (launching it if needed)."""
    return await _proxy(request).forward(request, "/models", segmentation=False)


async def ml_jobs(request: Request, rest: str) -> Response:
    """Passed through to the model server's ``/jobs/...`` (a backend without jobs answers 404)."""
    segmentation = request.method == "POST" and rest.startswith("segment/")
    return await _proxy(request).forward(request, _backend_path(request), segmentation=segmentation)


async def ml_images(request: Request, rest: str = "") -> Response:
    """Passed through to the model server's ``/images...`` (a backend without them: 404)."""
    return await _proxy(request).forward(request, _backend_path(request), segmentation=False)


def _backend_path(request: Request) -> str:
    """The request's path on the model server: as sent, less ``/ml``."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    return raw.decode("latin-1").removeprefix("/ml")


async def shutdown(request: Request) -> JSONResponse:
    """Stop the launched model server, then the sidecar."""
    gateway = _gateway(request)
    if gateway.launcher is not None:
        await gateway.launcher.stop()
    log.info("Shutting down on request.")
    return JSONResponse(
        ShuttingDown().model_dump(), background=BackgroundTask(request.app.state.exit_hook)
    )


def build_router(settings: Settings) -> APIRouter:
    """The sidecar's routes, documented with ``settings``' limits."""
    router = APIRouter()
    router.add_api_route(
        "/health", health, methods=["GET"], tags=["sidecar"], summary="Liveness of the sidecar"
    )
    router.add_api_route(
        "/ml/status",
        ml_status,
        methods=["GET"],
        tags=["ml"],
        response_model_exclude_none=True,
        summary="Whether segmentation is available, and the model to default to",
        description="Cheap: it asks an already known model server for `/health` and `/models` "
        f"(waiting {settings.probe_timeout:g} s at most), never loads a model and never "
        "launches a server. Fields absent here are unknown (e.g. `url` before a launched "
        "server has started).",
    )
    router.add_api_route(
        "/ml/start",
        ml_start,
        methods=["POST"],
        tags=["ml"],
        response_model_exclude_none=True,
        responses={503: {"model": MlStart, "description": "The model server cannot start."}},
        summary="Launch the model server now (the dialog's Start server)",
        description="Starts the model server if it is not running (it has "
        f"{settings.start_timeout:g} s to answer its health check, GEOLIBRE_ML_START_TIMEOUT), "
        "then answers like `/ml/status`. 503, with the reason in `message` and `detail`, "
        "when it cannot start.",
    )
    errors = proxy_errors(settings)
    router.add_api_route(
        "/ml/models",
        ml_models,
        methods=["GET"],
        tags=["ml"],
        response_class=Response,
        summary="The model server's models (launching it if needed)",
        responses={200: {"description": "The model server's `/models`, unchanged."}}
        | {code: errors[code] for code in (502, 503, 504)},
    )
    for mode in MODES.values():
        router.add_api_route(
            f"/ml{mode.path}",
            _segment_endpoint(mode),
            methods=["POST"],
            tags=["ml"],
            name=f"ml_segment_{mode.name}",
            summary=mode.summary,
            description=segment_description(mode, settings),
            response_class=Response,
            responses={200: SEGMENT_ANSWER, **errors},
            # Documented, not declared as FastAPI form parameters: those would make FastAPI
            # read and parse the upload, which the sidecar streams to the backend untouched.
            openapi_extra={"requestBody": mode.request_body()},
        )
    for method in ("GET", "POST", "DELETE"):  # one route each: one operation id each
        router.add_api_route(
            "/ml/jobs/{rest:path}",
            ml_jobs,
            methods=[method],
            tags=["ml"],
            name=f"ml_jobs_{method.lower()}",
            summary="Passed through to the model server's /jobs/...",
            response_class=Response,
            responses=errors,
            description="A backend without jobs (a `samgeo-api`) answers 404, relayed as is. "
            "`POST /ml/jobs/segment/{mode}` takes the same form as `/ml/segment/{mode}` and "
            f"counts against the {settings.max_segmentations} segmentations in flight.",
        )
    router.add_api_route(
        "/ml/images",
        ml_images,
        methods=["POST"],
        tags=["ml"],
        name="ml_images_post",
        summary="Passed through to the model server's POST /images",
        response_class=Response,
        responses=errors,
        description="Keep an image (`file` or `source`) for further prompts, which then give "
        "its `image_id` instead of the pixels. A backend without images (a `samgeo-api`) "
        "answers 404, relayed as is.",
    )
    for method in ("GET", "DELETE"):
        router.add_api_route(
            "/ml/images/{rest:path}",
            ml_images,
            methods=[method],
            tags=["ml"],
            name=f"ml_images_{method.lower()}",
            summary="Passed through to the model server's /images/...",
            response_class=Response,
            responses=errors,
        )
    router.add_api_route(
        "/shutdown",
        shutdown,
        methods=["POST"],
        tags=["sidecar"],
        summary="Stop the launched model server, then the sidecar",
        responses={200: {"model": ShuttingDown, "description": "Stopping."}},
    )
    return router
