"""``/segment/text``, ``/segment/automatic`` and ``/segment/predict``: samgeo-api's protocol.

Each endpoint turns its form into a :class:`~..runs.SegmentRequest` (every cheap check
happens here, before the upload is copied), then saves the upload to a private
directory and computes the answer in a worker thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from geolibre_ml.segment import formats
from geolibre_ml.segment.models import ModelManager
from geolibre_ml.segment.prompts import Prompt

from ..budget import admit
from ..params import AutomaticParams, CommonParams, PredictParams, TextParams
from ..runs import Rendered, SegmentRequest, check_model, compute, execute
from ..schemas import ErrorDetail
from ..uploads import display_name, saved_upload
from .service import Models

router = APIRouter(prefix="/segment", tags=["segment"])

_GEOJSON_EXAMPLE = {
    "type": "FeatureCollection",
    "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
    "features": [
        {
            "type": "Feature",
            "id": 1,
            "geometry": {"type": "Polygon", "coordinates": [[[500000.0, 4000000.0], "..."]]},
            "properties": {
                "value": 1,
                "score": 0.93,
                "area_m2": 1200.0,
                "mode": "text",
                "prompt": "water",
                "model": "classic",
                "source": "scene.tif",
            },
        }
    ],
}

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The objects found, in `output_format`: GeoJSON (geojson, detections), "
        "JSON (json), a GeoTIFF or a PNG label image.",
        "content": {
            "application/json": {"example": _GEOJSON_EXAMPLE},
            "image/tiff": {},
            "image/png": {},
        },
    },
    400: {"model": ErrorDetail, "description": "Unreadable image or malformed field."},
    404: {"model": ErrorDetail, "description": "No objects found."},
    413: {"model": ErrorDetail, "description": "Upload or image larger than the server takes."},
    422: {
        "model": ErrorDetail,
        "description": "Wrong field type, or a prompt the model cannot answer.",
    },
    503: {"model": ErrorDetail, "description": "The model cannot be loaded here (how to fix)."},
}


def build_request(
    models: ModelManager, common: CommonParams, prompt: Prompt, point_crs: str | None = None
) -> SegmentRequest:
    """Check everything that needs no pixels and resolve the model (blocking: the first
    call imports the backend's module).

    Raises:
        SegmentError: unknown format or model, malformed options, unavailable model.
    """
    output_format = formats.check_format(common.output_format)
    version, model_id = models.resolve(common.model_version, common.model_id)
    spec = SegmentRequest(
        prompt=prompt,
        version=version,
        model_id=model_id,
        output_format=output_format,
        read=common.read_options(),
        output=common.output_options(),
        point_crs=point_crs,
    )
    check_model(models, version, model_id)
    return spec


async def answer(request: Request, common: CommonParams, spec: SegmentRequest) -> Response:
    """Save the upload, run the segmentation, and send the rendered answer."""
    models: ModelManager = request.app.state.models
    name = display_name(common.file.filename)
    async with saved_upload(common.file) as path, admit(request, path, name):
        rendered: Rendered = await compute(
            request,
            request.app.state.limiter,
            lambda cancelled: execute(spec, path, name, models, cancelled=cancelled),
        )
    headers = {}
    if rendered.filename:
        headers["Content-Disposition"] = f'attachment; filename="{rendered.filename}"'
    return Response(rendered.body, media_type=rendered.media_type, headers=headers)


@router.post("/text", responses=RESPONSES, response_class=Response)
async def segment_text(
    request: Request,
    models: Models,
    common: Annotated[CommonParams, Depends()],
    params: Annotated[TextParams, Depends()],
) -> Response:
    """Find every instance of what `prompt` names (e.g. `water`, `trees`)."""
    spec = await run_in_threadpool(build_request, models, common, params.to_prompt())
    return await answer(request, common, spec)


@router.post("/automatic", responses=RESPONSES, response_class=Response)
async def segment_automatic(
    request: Request,
    models: Models,
    common: Annotated[CommonParams, Depends()],
    params: Annotated[AutomaticParams, Depends()],
) -> Response:
    """Segment every distinct region of the image, without a prompt."""
    spec = await run_in_threadpool(build_request, models, common, params.to_prompt())
    return await answer(request, common, spec)


@router.post("/predict", responses=RESPONSES, response_class=Response)
async def segment_predict(
    request: Request,
    models: Models,
    common: Annotated[CommonParams, Depends()],
    params: Annotated[PredictParams, Depends()],
) -> Response:
    """Segment the objects designated by `boxes` and/or `point_coords`, in pixels or in
    `point_crs`."""
    spec = await run_in_threadpool(build_request, models, common, params.to_prompt(), params.crs)
    return await answer(request, common, spec)
