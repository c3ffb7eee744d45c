"""``/segment/text``, ``/segment/automatic`` and ``/segment/predict``: samgeo-api's protocol.

The three endpoints are built from one table of modes (:data:`MODES`): each turns its
form into a :class:`~..runs.SegmentRequest` (every cheap check happens here, before the
upload is copied), then saves the upload to a private directory, computes the answer
in a worker thread into a file there, and streams that file back.
"""

# No ``from __future__ import annotations``: the endpoints' annotations name each
# mode's parameter class, which FastAPI must see as a class, not as a string.

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from geolibre_ml import protocol
from geolibre_ml.segment import formats
from geolibre_ml.segment.models import ModelManager
from geolibre_ml.segment.prompts import Prompt

from ..budget import admit
from ..params import AutomaticParams, CommonParams, ModeParams, PredictParams, TextParams
from ..runs import SegmentRequest, check_model, compute, execute
from ..schemas import ErrorDetail
from ..uploads import CHUNK, display_name, saved_upload
from .service import Models

router = APIRouter(prefix="/segment", tags=["segment"])

#: Answer header: ``hit`` when the prepared image was reused from the cache, else ``miss``.
CACHE_HEADER = "X-GeoLibre-Cache"

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


async def disconnect_of(request: Request) -> None:
    """Return when the client of ``request`` disconnects.

    The body was read when the form was parsed; what the server hears from the client
    now is its disconnect, if it leaves before the answer.
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def answer(request: Request, common: CommonParams, spec: SegmentRequest) -> Response:
    """Save the upload, run the segmentation into a file, and stream that file back."""
    models: ModelManager = request.app.state.models
    name = display_name(common.file.filename)
    async with saved_upload(common.file) as upload, admit(request, upload.path, name):
        rendered = await compute(
            lambda: disconnect_of(request),
            request.app.state.limiter,
            lambda cancelled: execute(
                spec,
                upload.path,
                name,
                models,
                out_dir=upload.path.parent,
                content_key=upload.digest,
                cancelled=cancelled,
            ),
        )
        # Opened before the request's folder is removed: the open file stays readable
        # while it streams, and its space is freed when it is closed.
        handle = rendered.path.open("rb")
        size = rendered.path.stat().st_size
    # Whether the image's prepared state came from an earlier prompt's upload of the
    # same bytes: the feature cache at work, observable by clients and tests.
    headers = {"Content-Length": str(size), CACHE_HEADER: "hit" if rendered.reused else "miss"}
    if rendered.filename:
        headers["Content-Disposition"] = f'attachment; filename="{rendered.filename}"'
    return StreamingResponse(
        _chunks(handle),
        media_type=rendered.media_type,
        headers=headers,
        background=BackgroundTask(handle.close),
    )


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := handle.read(CHUNK):
            yield chunk
    finally:
        handle.close()


@dataclass(frozen=True)
class ModeRoute:
    """One ``/segment/{mode}`` endpoint: the protocol's mode and its form's parameters."""

    mode: protocol.Mode
    params: type[ModeParams]


#: The endpoints, one per mode of the protocol table (the sidecar's routes come from the
#: same table); ``/jobs/segment/*`` is built from it too.
MODES: tuple[ModeRoute, ...] = (
    ModeRoute(protocol.TEXT, TextParams),
    ModeRoute(protocol.AUTOMATIC, AutomaticParams),
    ModeRoute(protocol.PREDICT, PredictParams),
)


def segment_endpoint(route: ModeRoute) -> Any:
    """The endpoint function of one mode."""
    params_class = route.params

    async def endpoint(
        request: Request,
        models: Models,
        common: Annotated[CommonParams, Depends()],
        params: Annotated[params_class, Depends()],
    ) -> Response:
        prompt = params.to_prompt()
        spec = await run_in_threadpool(build_request, models, common, prompt, params.prompt_crs)
        return await answer(request, common, spec)

    endpoint.__name__ = f"segment_{route.mode.name}"
    endpoint.__doc__ = route.mode.summary
    return endpoint


for _route in MODES:
    router.add_api_route(
        _route.mode.path.removeprefix(router.prefix),
        segment_endpoint(_route),
        methods=["POST"],
        name=f"segment_{_route.mode.name}",
        description=_route.mode.summary,
        responses=RESPONSES,
        response_class=Response,
    )
