"""The sidecar's endpoints: ``/health``, ``/ml/*`` and ``/shutdown``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask

from .gateway import Gateway
from .proxy import Proxy

log = logging.getLogger("geolibre_ml.sidecar")

router = APIRouter()

SEGMENT_FIELDS = (
    "Multipart form, streamed unchanged to the model server's `{path}`; its answer comes "
    "back unchanged. Fields: `file` (GeoTIFF, PNG or JPEG), `model_version`, `model_id`, "
    "`output_format`, `min_size`, `max_size`, {extra}. Uploads over 100 MiB get 413, a fifth "
    "concurrent segmentation 429, no reachable backend 503, a backend failing mid-request "
    "502, a backend silent past the proxy timeout 504."
)


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _proxy(request: Request) -> Proxy:
    return request.app.state.proxy


@router.get("/health", tags=["sidecar"])
async def health() -> dict[str, str]:
    """Liveness of the sidecar itself (no token needed): ``{"status": "ok"}``."""
    return {"status": "ok"}


@router.get("/ml/status", tags=["ml"])
async def ml_status(request: Request) -> dict[str, Any]:
    """Whether segmentation is available, the model to default to, and the backend's models.

    Cheap: it asks an already known backend for ``/health`` and ``/models`` and never
    loads a model or launches a server.
    """
    return await _gateway(request).status()


@router.post("/ml/start", tags=["ml"])
async def ml_start(request: Request) -> JSONResponse:
    """Launch the model server now (the dialog's **Start server**); answers like ``/ml/status``.

    503, with the reason in ``message`` and ``detail``, when it cannot start.
    """
    started, answer = await _gateway(request).start()
    return JSONResponse(answer, status_code=200 if started else 503)


@router.get("/ml/models", tags=["ml"])
async def ml_models(request: Request) -> Response:
    """The model server's ``/models`` (launching it if needed)."""
    return await _proxy(request).forward(request, "/models", segmentation=False)


@router.post(
    "/ml/segment/text",
    tags=["ml"],
    description=SEGMENT_FIELDS.format(
        path="/segment/text", extra="`prompt`, `confidence_threshold`"
    ),
)
async def ml_segment_text(request: Request) -> Response:
    """Segment what a text prompt names."""
    return await _proxy(request).forward(request, "/segment/text", segmentation=True)


@router.post(
    "/ml/segment/automatic",
    tags=["ml"],
    description=SEGMENT_FIELDS.format(
        path="/segment/automatic",
        extra="`foreground`, `unique`, `points_per_side`, `pred_iou_thresh`, "
        "`stability_score_thresh`",
    ),
)
async def ml_segment_automatic(request: Request) -> Response:
    """Segment every distinct region."""
    return await _proxy(request).forward(request, "/segment/automatic", segmentation=True)


@router.post(
    "/ml/segment/predict",
    tags=["ml"],
    description=SEGMENT_FIELDS.format(
        path="/segment/predict",
        extra="`point_coords`, `point_labels`, `boxes`, `point_crs`, `multimask_output`",
    ),
)
async def ml_segment_predict(request: Request) -> Response:
    """Segment what boxes and points designate."""
    return await _proxy(request).forward(request, "/segment/predict", segmentation=True)


@router.api_route("/ml/jobs/{rest:path}", methods=["GET", "POST", "DELETE"], tags=["ml"])
async def ml_jobs(request: Request, rest: str) -> Response:
    """Passed through to the model server's ``/jobs/...`` (a backend without jobs answers 404)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").removeprefix("/ml")
    segmentation = request.method == "POST" and rest.startswith("segment/")
    return await _proxy(request).forward(request, path, segmentation=segmentation)


@router.post("/shutdown", tags=["sidecar"])
async def shutdown(request: Request) -> JSONResponse:
    """Stop the launched model server, then the sidecar."""
    gateway = _gateway(request)
    if gateway.launcher is not None:
        await gateway.launcher.stop()
    log.info("Shutting down on request.")
    return JSONResponse(
        {"status": "shutting_down"}, background=BackgroundTask(request.app.state.exit_hook)
    )
