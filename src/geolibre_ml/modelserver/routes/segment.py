"""``/segment/text``, ``/segment/automatic`` and ``/segment/predict``: samgeo-api's protocol.

The three endpoints are built from one table of modes (:data:`MODES`): each turns its
form into a :class:`~..runs.SegmentRequest` (every cheap check happens here, before the
upload is copied), then saves the upload to a private directory (or opens the
``source`` where it is: a URL by range requests, a local path under the data roots),
computes the answer in a worker thread into a file there, and streams that file back.
"""

# No ``from __future__ import annotations``: the endpoints' annotations name each
# mode's parameter class, which FastAPI must see as a class, not as a string.

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from geolibre_ml import protocol
from geolibre_ml.segment import formats
from geolibre_ml.segment.errors import quoted
from geolibre_ml.segment.models import ModelManager
from geolibre_ml.segment.prompts import Prompt

from ..budget import admit
from ..images import ImageStore
from ..params import (
    AutomaticParams,
    CommonParams,
    ModeParams,
    PredictParams,
    TextParams,
    optional_text,
)
from ..runs import Rendered, SegmentRequest, check_model, compute, execute
from ..schemas import ErrorDetail
from ..sources import open_source
from ..uploads import CHUNK, display_name, process_area, saved_upload
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
    403: {"model": ErrorDetail, "description": "A source this server may not read."},
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


@dataclass(frozen=True)
class RunInput:
    """The raster a run reads, and a private folder for its answer file.

    Attributes:
        path: the saved upload, a source's resolved local path, or its ``/vsicurl/`` path.
        name: the name shown in messages and features' ``source``.
        content_key: the prepared-image cache key, or None (not cached).
        out_dir: the request's private folder (removed when the request ends).
    """

    path: str | Path
    name: str
    content_key: str | None
    out_dir: Path


def unknown_image(image_id: str) -> HTTPException:
    """The 404 of an image this server does not hold (never uploaded, deleted, expired)."""
    return HTTPException(
        404,
        f"No image {quoted(image_id)} here: it was never uploaded, was deleted, or went unused "
        "for longer than GEOLIBRE_ML_IMAGE_TTL_S seconds. POST /images again.",
    )


@contextlib.asynccontextmanager
async def run_input(common: CommonParams, images: ImageStore) -> AsyncIterator[RunInput]:
    """The request's raster: the upload copied to a private folder, the ``source``
    opened where it is, or the kept image ``image_id`` names (nothing copied for
    either; only the answer is written to the folder).

    Raises:
        HTTPException: 404 for an ``image_id`` this server does not hold.
    """
    image_id = optional_text(common.image_id)
    if image_id is not None:
        image = images.get(image_id)
        if image is None:
            raise unknown_image(image_id)
        out_dir = process_area().request_folder()
        try:
            yield RunInput(image.path, image.name, image.content_key, out_dir)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        return
    if common.file is not None:
        async with saved_upload(common.file) as upload:
            name = display_name(common.file.filename)
            yield RunInput(upload.path, name, upload.digest, upload.path.parent)
        return
    assert common.source is not None  # checked by CommonParams.check_input
    opened = await run_in_threadpool(open_source, common.source)
    out_dir = process_area().request_folder()
    try:
        yield RunInput(opened.path, opened.name, opened.content_key, out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


async def answer(request: Request, common: CommonParams, spec: SegmentRequest) -> Response:
    """Open the input, run the segmentation into a file, and stream that file back."""
    models: ModelManager = request.app.state.models
    async with (
        run_input(common, request.app.state.images) as given,
        admit(request, given.path, given.name, common.tile_size),
    ):
        rendered = await compute(
            lambda: disconnect_of(request),
            request.app.state.limiter,
            lambda cancelled: execute(
                spec,
                given.path,
                given.name,
                models,
                out_dir=given.out_dir,
                content_key=given.content_key,
                cancelled=cancelled,
            ),
        )
        # Opened before the request's folder is removed: the open file stays readable
        # while it streams, and its space is freed when it is closed.
        return file_answer(rendered)


def file_answer(rendered: Rendered) -> StreamingResponse:
    """Stream the answer file ``rendered`` back, with the synchronous call's headers.

    The file is opened here: it stays readable while it streams even when its folder is
    removed meanwhile (the request ended, the job was deleted).
    """
    handle = rendered.path.open("rb")
    size = os.fstat(handle.fileno()).st_size
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


async def checked_request(
    models: ModelManager, common: CommonParams, params: ModeParams
) -> SegmentRequest:
    """Every check that needs no pixels, before anything is copied: the input fields, the
    prompt, the format and the model (``/segment/*`` and ``/jobs/segment/*`` alike).

    Raises:
        RequestValidationError: a missing ``file`` or ``prompt`` (422).
        SegmentError: anything else wrong with the fields, or an unavailable model.
    """
    common.check_input()
    prompt = params.to_prompt()
    return await run_in_threadpool(build_request, models, common, prompt, params.prompt_crs)


def segment_endpoint(route: ModeRoute) -> Any:
    """The endpoint function of one mode."""
    params_class = route.params

    async def endpoint(
        request: Request,
        models: Models,
        common: Annotated[CommonParams, Depends()],
        params: Annotated[params_class, Depends()],
    ) -> Response:
        spec = await checked_request(models, common, params)
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
