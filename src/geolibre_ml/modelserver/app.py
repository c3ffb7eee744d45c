"""The model server's FastAPI application: thin routers over :mod:`geolibre_ml.segment`.

Importing this module loads no model and no deep-learning framework: backends are
imported and loaded on the first request that names them (see
:class:`~geolibre_ml.segment.models.ModelManager`).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from geolibre_ml import __version__
from geolibre_ml.segment.models import ModelManager

from . import errors
from .budget import MemoryBudget, budget_bytes_from_env
from .images import ImageStore, image_ttl_from_env
from .jobs import JobRegistry, ttl_from_env, workers_from_env
from .methods import OptionsAnswer
from .routes import images as images_routes
from .routes import jobs, segment, service
from .uploads import UploadLimit, max_upload_bytes_from_env, process_area

DESCRIPTION = """
Promptable segmentation of geospatial imagery into GIS-ready polygons.

This server speaks segment-geospatial's **samgeo-api** protocol: the same paths, form
fields, defaults and answers, so clients written for `samgeo-api` work unchanged.
Upload a GeoTIFF (any band count and data type), PNG or JPEG as the form field `file`.

- **POST /segment/text**: every instance of what a word names (`water`, `trees`).
- **POST /segment/automatic**: every distinct region.
- **POST /segment/predict**: the objects under boxes and/or points.
- **POST /jobs/segment/{mode}**: the same, as a job: progress as server-sent events,
  cancel with DELETE, the result in more formats (GeoPackage, FlatGeobuf, GeoParquet).

Polygons come back in the raster's CRS (or `output_crs`), with a GeoJSON `crs` member;
images without georeferencing give pixel coordinates (x right, y down). No objects found
is a 404 with a `detail`; bad input is a 4xx whose `detail` says what to fix.
"""


def create_app(
    models: ModelManager | None = None,
    *,
    workers: int = 2,
    max_upload_bytes: int | None = None,
    memory_budget_bytes: int | None = None,
    job_workers: int | None = None,
    job_ttl_s: float | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        models: the model manager (a fresh one by default).
        workers: segmentations computed at once; further requests wait their turn,
            which bounds memory whatever the number of clients.
        max_upload_bytes: largest request body accepted (413 beyond); default
            ``GEOLIBRE_ML_MAX_UPLOAD_MB`` MiB, else 4096 MiB (4 GiB).
        memory_budget_bytes: memory the runs may expect to use at once (see
            :mod:`.budget`); default ``GEOLIBRE_ML_MEMORY_BUDGET_MB`` MiB, else half
            the machine's memory.
        job_workers: jobs run at once (others queue); default
            ``GEOLIBRE_ML_JOB_WORKERS``, else 1.
        job_ttl_s: seconds a finished job is kept; default ``GEOLIBRE_ML_JOB_TTL_S``,
            else 3600.

    Uploads are kept in this process's folder under ``<TMPDIR>/geolibre-ml-uploads``
    (:func:`~.uploads.process_area`): at start-up the folders of servers that were
    killed are removed, at shutdown this server's own.
    """
    area = process_area()
    budget = MemoryBudget(
        memory_budget_bytes if memory_budget_bytes is not None else budget_bytes_from_env()
    )
    registry = JobRegistry(
        area=area,
        budget=budget,
        workers=job_workers if job_workers is not None else workers_from_env(),
        ttl_s=job_ttl_s if job_ttl_s is not None else ttl_from_env(),
    )

    manager = models or ModelManager()
    images = ImageStore(
        image_ttl_from_env(),
        # A forgotten image's prepared tiles go with it (keys start with its content key).
        forget=lambda key: manager.prepared.discard(lambda k: k[0] == key),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        area.open()
        try:
            # Shutdown cancels the running jobs and removes every job folder.
            async with registry.running():
                yield
        finally:
            images.close()
            area.close()
            # The Dask clients jobs opened (GEOLIBRE_ML_DASK_SCHEDULER), if any: imported
            # only when a job ran on a cluster, so only then closed.
            cluster = sys.modules.get("geolibre_ml.segment.cluster")
            if cluster is not None:
                cluster.close_runners()

    app = FastAPI(
        title="geolibre-ml model server",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "segment", "description": "Segment an uploaded image (samgeo-api)."},
            {"name": "service", "description": "Health and the models the server offers."},
            {
                "name": "images",
                "description": "Images uploaded once and prompted many times (our addition).",
            },
            {
                "name": "jobs",
                "description": "Long runs: progress as server-sent events, cancel, results "
                "in more formats (our addition).",
            },
        ],
        lifespan=lifespan,
    )
    app.state.uploads = area
    app.state.models = manager
    app.state.images = images
    app.state.limiter = anyio.CapacityLimiter(max(1, workers))
    app.state.budget = budget
    app.state.jobs = registry
    app.include_router(service.router)
    app.include_router(segment.router)
    app.include_router(jobs.router)
    app.include_router(images_routes.router)
    limit = max_upload_bytes if max_upload_bytes is not None else max_upload_bytes_from_env()
    app.add_middleware(UploadLimit, max_bytes=limit)
    app.add_middleware(OptionsAnswer, routes=app)
    # Added last, so it wraps everything else.
    errors.install(app)
    return app
