"""``/health`` and ``/models``: what the service is and which models it holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from geolibre_ml import __version__
from geolibre_ml.segment.models import ModelManager

from ..schemas import Cleared, Health, ModelCatalog

router = APIRouter(tags=["service"])


def model_manager(request: Request) -> ModelManager:
    """The app's model manager (a dependency)."""
    return request.app.state.models


Models = Annotated[ModelManager, Depends(model_manager)]


@router.get("/health")
def health() -> Health:
    """Liveness: answers as soon as the server accepts requests; loads nothing."""
    return Health(version=__version__)


@router.get("/models")
def list_models(models: Models) -> ModelCatalog:
    """Known model ids per version, the models in memory, and which versions can load now
    (checked offline, without loading anything)."""
    return ModelCatalog(**models.catalog())


@router.delete("/models")
async def clear_models(models: Models) -> Cleared:
    """Release every loaded model (runs in progress finish with the copy they hold)."""
    await run_in_threadpool(models.clear)
    return Cleared()
