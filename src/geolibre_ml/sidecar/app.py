"""The sidecar's FastAPI application: guards, ``/ml`` routes, and the web app's static files."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from geolibre_ml import __version__

from .config import Settings
from .gateway import Gateway
from .proxy import Proxy
from .routes import build_router
from .security import HostGuard, OriginGuard, TokenGuard
from .web import WebApp

log = logging.getLogger("geolibre_ml.sidecar")

#: The web app (the package's ``web`` folder), served at ``/``.
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def _interrupt_self() -> None:
    # Outside ``server.run`` nobody handed us the server: SIGINT makes uvicorn (or any
    # ASGI server) run its graceful shutdown, lifespan included.
    os.kill(os.getpid(), signal.SIGINT)


def create_app(settings: Settings | None = None, *, web_dir: Path | None = WEB_DIR) -> FastAPI:
    """Build the sidecar.

    Args:
        settings: configuration; read from the environment now when not given.
        web_dir: folder served at ``/`` (``None``, or not a folder: no web app).
    """
    settings = settings or Settings.from_env()
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.open()
        if gateway.config_error:
            log.warning("%s", gateway.config_error)
        elif gateway.external is not None:
            log.info("Model server: %s (GEOLIBRE_ML_SAMGEO_URL).", gateway.external.shown)
        elif gateway.plan is not None:
            log.info("Model server: %s, started on first use.", gateway.plan.source)
            if gateway.plan.problem:
                log.warning("%s", gateway.plan.problem)
        try:
            yield
        finally:
            await gateway.close()

    app = FastAPI(
        title="geolibre-ml sidecar",
        version=__version__,
        description=(
            "GeoLibre's `/ml` sidecar: streams segmentation requests to a model server "
            "(ours or segment-geospatial's `samgeo-api`), launched on first use or reached "
            "at `GEOLIBRE_ML_SAMGEO_URL`, and serves the web app at `/`."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.gateway = gateway
    app.state.proxy = Proxy(gateway)
    app.state.exit_hook = _interrupt_self
    api = build_router(settings)
    app.include_router(api)
    # Last, since it matches every path. It is told the API's routes (the router's own and
    # the app's /docs and /openapi.json) to answer wrong methods on them itself.
    web = web_dir if web_dir is not None and web_dir.is_dir() else None
    app.mount("/", WebApp(web, [*app.router.routes, *api.routes]), name="web")

    # Added innermost first: the Host check runs before anything else.
    app.add_middleware(TokenGuard, token=settings.token)
    app.add_middleware(OriginGuard)
    app.add_middleware(HostGuard)
    return app
