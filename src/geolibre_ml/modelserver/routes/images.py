"""``/images``: upload once, prompt many times (our addition; see :mod:`..images`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from ..images import ImageStore, describe
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
    image = _store(request).get(image_id)
    if image is None:
        raise unknown_image(image_id)
    return ImageInfo(image_id=image.image_id, **image.description)


@router.delete("/images/{image_id}")
async def delete_image(request: Request, image_id: str) -> dict[str, str]:
    """Forget the image, its file and its cached features."""
    if not _store(request).remove(image_id):
        raise unknown_image(image_id)
    return {"image_id": image_id, "status": "deleted"}
