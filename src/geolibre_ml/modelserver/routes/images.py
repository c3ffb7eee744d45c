"""``/images``: upload once, prompt many times (our addition; see :mod:`..images`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from ..images import ImageStore, StoredImage, describe
from ..params import CommonParams
from ..schemas import ImageInfo
from ..uploads import process_area
from .segment import run_input, unknown_image

router = APIRouter(tags=["images"])


def _store(request: Request) -> ImageStore:
    return request.app.state.images


class ImageForm:
    """``POST /images``: a ``file`` or a ``source``, as the segment endpoints take them."""

    def __init__(
        self,
        file: Annotated[UploadFile | None, File(description="The image, uploaded once.")] = None,
        source: Annotated[
            str | None, Form(description="Instead of `file`: a URL or an allowed local path.")
        ] = None,
    ) -> None:
        self.common = CommonParams(file=file, source=source, image_id=None)


@router.post("/images", status_code=201, response_model=ImageInfo)
async def add_image(request: Request, form: Annotated[ImageForm, Depends()]) -> ImageInfo:
    """Keep an image for further prompts: they name its ``image_id`` instead of sending it."""
    common = form.common
    common.check_input()
    store = _store(request)
    async with run_input(common, store) as given:
        description = await run_in_threadpool(describe, given.path, given.name)
        path: str | Path = given.path
        folder = None
        if common.file is not None:
            # Moved out of the request's folder, which goes when the request ends.
            folder = process_area().request_folder(prefix="image-")
            path = folder / Path(given.path).name
            Path(given.path).replace(path)
        image = store.add(path, given.name, given.content_key, description, folder)
    return ImageInfo(image_id=image.image_id, **description)


@router.get("/images/{image_id}", response_model=ImageInfo)
async def get_image(request: Request, image_id: str) -> ImageInfo:
    """The image's description (and its idle time starts again)."""
    image = _held(request, image_id)
    return ImageInfo(image_id=image.image_id, **image.description)


#: Longest side of a preview by default, and at most, in pixels.
PREVIEW_SIZE, MAX_PREVIEW_SIZE = 1024, 4096

PNG_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "An RGBA PNG."}
}


def _held(request: Request, image_id: str) -> StoredImage:
    image = _store(request).get(image_id)
    if image is None:
        raise unknown_image(image_id)
    return image


def _open(image: StoredImage) -> Any:
    """The image opened for reading with its read plan, measured on first use only."""
    from geolibre_ml.segment.raster import RasterSource

    src = RasterSource(image.path, name=image.name, plan=image.plan)
    image.plan = src.plan
    return src


def _png(content: bytes) -> Response:
    # An image's pixels never change under its id: the browser may keep its tiles.
    return Response(
        content, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )


@router.get(
    "/images/{image_id}/tiles/{z}/{x}/{y}.png",
    response_class=Response,
    responses=PNG_ANSWER,
    summary="A web-mercator map tile of the image as the model sees it",
)
async def image_tile(
    request: Request,
    image_id: str,
    z: Annotated[int, PathParam(description="Zoom level (XYZ scheme).")],
    x: Annotated[int, PathParam(description="Tile column, 0 at 180° W.")],
    y: Annotated[int, PathParam(description="Tile row, 0 at the north.")],
) -> Response:
    """256 px EPSG:3857 tile: the model's bands and whole-raster stretch, nodata transparent.

    Tiles outside the image are transparent. An image without a CRS has no place on a web
    map (400): show its ``preview.png`` instead.
    """
    from geolibre_ml.segment import maptiles

    if problem := maptiles.check_tile(z, x, y):
        raise HTTPException(400, problem)
    image = _held(request, image_id)
    if image.description.get("crs") is None:
        raise HTTPException(
            400,
            f"{image.name!r} has no CRS, so it has no place on a web map: show "
            f"/images/{image_id}/preview.png in pixel space instead, or georeference it "
            "(gdal_translate -a_srs -a_ullr).",
        )

    def render() -> bytes:
        with _open(image) as src:
            return maptiles.render_tile(src, z, x, y)

    return _png(await run_in_threadpool(render))


@router.get(
    "/images/{image_id}/preview.png",
    response_class=Response,
    responses=PNG_ANSWER,
    summary="The whole image as the model sees it, in pixel space",
)
async def image_preview(
    request: Request,
    image_id: str,
    max_size: Annotated[
        int,
        Query(ge=1, le=MAX_PREVIEW_SIZE, description="Longest side of the picture, in pixels."),
    ] = PREVIEW_SIZE,
) -> Response:
    """The image downsampled (never enlarged), rows from the top: for pictures without a CRS,
    whose answers come in pixel coordinates. Nodata is transparent."""
    from geolibre_ml.segment import maptiles

    image = _held(request, image_id)

    def render() -> bytes:
        with _open(image) as src:
            return maptiles.render_preview(src, min(max_size, max(src.info.width, src.info.height)))

    return _png(await run_in_threadpool(render))


@router.delete("/images/{image_id}")
async def delete_image(request: Request, image_id: str) -> dict[str, str]:
    """Forget the image, its file and its cached features."""
    if not _store(request).remove(image_id):
        raise unknown_image(image_id)
    return {"image_id": image_id, "status": "deleted"}
