"""Running the model server: ``geolibre-ml model-server``."""

from __future__ import annotations

import logging

import uvicorn

from geolibre_ml.segment.models import ModelManager

from .app import create_app

log = logging.getLogger("geolibre_ml.modelserver")


def run(host: str = "127.0.0.1", port: int = 8000, preload: str | None = None) -> None:
    """Serve until interrupted.

    Args:
        host: interface to bind (loopback by default).
        port: TCP port.
        preload: ``VERSION`` or ``VERSION:MODEL_ID`` to load before serving.
    """
    models = ModelManager()
    if preload:
        version, _, model_id = preload.partition(":")
        version, model_id = models.resolve(version, model_id or None)
        models.get(version, model_id)
    uvicorn.run(create_app(models), host=host, port=port, log_level="info")
