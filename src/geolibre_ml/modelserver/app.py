"""The model server's FastAPI application."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from geolibre_ml import __version__
from geolibre_ml.segment import formats
from geolibre_ml.segment.errors import NoObjectsFound
from geolibre_ml.segment.models import ModelManager
from geolibre_ml.segment.pipeline import segment_raster
from geolibre_ml.segment.prompts import (
    AutomaticPrompt,
    Prompt,
    TextPrompt,
    parse_boxes,
    parse_labels,
    parse_points,
    point_box_prompt,
)

from . import errors
from .params import AutomaticParams, CommonParams, PredictParams, TextParams
from .uploads import saved_upload

log = logging.getLogger("geolibre_ml.modelserver")

NO_OBJECTS = {
    "text": "No objects found for the given prompt. Try a different prompt or lower "
    "confidence_threshold.",
    "automatic": "No objects found for automatic segmentation. Try a smaller min_size.",
    "predict": "No objects found for the given prompts. Try a larger box or other points.",
}


def create_app(models: ModelManager | None = None, *, workers: int = 2) -> FastAPI:
    """Build the app.

    Args:
        models: the model manager (a fresh one by default).
        workers: segmentations computed at once; further requests wait their turn,
            which bounds memory whatever the number of clients.
    """
    app = FastAPI(
        title="geolibre-ml model server",
        version=__version__,
        description="Promptable segmentation of geospatial imagery (samgeo-api protocol).",
    )
    app.state.models = models or ModelManager()
    app.state.limiter = anyio.CapacityLimiter(workers)
    errors.install(app)

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: ``{"status": "ok", "version": ...}``."""
        return {"status": "ok", "version": __version__}

    @app.get("/models")
    def list_models(request: Request) -> dict[str, Any]:
        """Known model ids per version, loaded models, and which versions can load now."""
        return request.app.state.models.catalog()

    @app.delete("/models")
    def clear_models(request: Request) -> dict[str, str]:
        """Free every loaded model."""
        request.app.state.models.clear()
        return {"status": "cleared"}

    async def run(
        request: Request, common: CommonParams, prompt: Prompt, point_crs: str | None = None
    ) -> Response:
        manager: ModelManager = request.app.state.models
        output_format = formats.check_format(common.output_format)
        version, model_id = manager.resolve(common.model_version, common.model_id)
        read = common.read_options()
        output = common.output_options()
        async with saved_upload(common.file) as path:

            def work() -> bytes:
                with manager.using(version, model_id) as backend:
                    result = segment_raster(
                        path,
                        prompt,
                        backend,
                        name=common.file.filename or path.name,
                        read=read,
                        output=output,
                        prompt_crs=point_crs,
                    )
                if len(result.features) == 0:
                    raise NoObjectsFound(NO_OBJECTS[prompt.mode])
                return formats.render(result, output_format)

            body = await run_in_threadpool_limited(request.app.state.limiter, work)
        return Response(body, media_type=formats.MEDIA_TYPES[output_format])

    @app.post("/segment/text")
    async def segment_text(
        request: Request,
        common: Annotated[CommonParams, Depends()],
        params: Annotated[TextParams, Depends()],
    ) -> Response:
        """Find every instance of what ``prompt`` names."""
        prompt = TextPrompt(params.prompt.strip(), params.confidence_threshold)
        return await run(request, common, prompt)

    @app.post("/segment/automatic")
    async def segment_automatic(
        request: Request,
        common: Annotated[CommonParams, Depends()],
        params: Annotated[AutomaticParams, Depends()],
    ) -> Response:
        """Segment every distinct region."""
        prompt = AutomaticPrompt(
            params.foreground,
            params.unique,
            params.points_per_side,
            params.pred_iou_thresh,
            params.stability_score_thresh,
        )
        return await run(request, common, prompt)

    @app.post("/segment/predict")
    async def segment_predict(
        request: Request,
        common: Annotated[CommonParams, Depends()],
        params: Annotated[PredictParams, Depends()],
    ) -> Response:
        """Segment the objects designated by boxes and/or points."""
        prompt = point_box_prompt(
            parse_points(params.point_coords),
            parse_labels(params.point_labels),
            parse_boxes(params.boxes),
            multimask_output=params.multimask_output,
        )
        point_crs = (
            params.point_crs.strip() if params.point_crs and params.point_crs.strip() else None
        )
        return await run(request, common, prompt, point_crs)

    return app


async def run_in_threadpool_limited(limiter: anyio.CapacityLimiter, func: Any) -> Any:
    """Run ``func`` in a worker thread, at most ``limiter`` at once."""
    async with limiter:
        return await run_in_threadpool(func)
