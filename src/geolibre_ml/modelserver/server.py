"""Running the model server: ``geolibre-ml model-server``."""

from __future__ import annotations

import logging
import sys
import time

import uvicorn
from uvicorn.logging import DefaultFormatter

from geolibre_ml.segment.errors import SegmentError
from geolibre_ml.segment.models import ModelManager

from .app import create_app

log = logging.getLogger("geolibre_ml.modelserver")


def configure_logging(level: int = logging.INFO) -> None:
    """Send the server's own messages (model loads, runs, errors) to stderr, like uvicorn's."""
    logger = logging.getLogger("geolibre_ml")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(DefaultFormatter("%(levelprefix)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def preload_model(models: ModelManager, preload: str) -> tuple[str, str]:
    """Load ``VERSION`` or ``VERSION:MODEL_ID`` into ``models`` now.

    Returns:
        The (version, model id) loaded.

    Raises:
        SegmentError: an unknown version or id (InvalidRequest), or a model that cannot
            be loaded here (ModelUnavailable), each with a message saying what to do.
    """
    version, _, model_id = preload.strip().partition(":")
    version, model_id = models.resolve(version or None, model_id or None)
    started = time.perf_counter()
    models.get(version, model_id)
    log.info("Preloaded %s:%s in %.1f s", version, model_id, time.perf_counter() - started)
    return version, model_id


def run(host: str = "127.0.0.1", port: int = 8000, preload: str | None = None) -> None:
    """Serve until interrupted.

    Args:
        host: interface to bind (loopback by default).
        port: TCP port.
        preload: ``VERSION`` or ``VERSION:MODEL_ID`` to load before serving.

    Raises:
        SegmentError: when ``preload`` names a model that cannot be loaded (the
            command line turns this into a message and exit status 2).
    """
    configure_logging()
    models = ModelManager()
    if preload and preload.strip():
        preload_model(models, preload)
    uvicorn.run(create_app(models), host=host, port=port, log_level="info")


def main(host: str = "127.0.0.1", port: int = 8000, preload: str | None = None) -> int:
    """``geolibre-ml model-server``: serve, and return the exit status.

    A ``--preload`` that cannot be honoured is reported in one line on stderr (no
    traceback) with exit status 2, before anything binds the port.
    """
    try:
        run(host, port, preload)
    except SegmentError as exc:
        print(
            f"geolibre-ml model-server: cannot preload {preload!r}: {exc.detail}", file=sys.stderr
        )
        return 2
    return 0
