"""Typed answers of the model server's JSON endpoints (they document themselves in /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    """``GET /health``: the server is up."""

    status: Literal["ok"] = "ok"
    version: str = Field(description="geolibre-ml version.")


class ModelCatalog(BaseModel):
    """``GET /models``: what can be asked for, what is in memory, what can load now."""

    models: dict[str, list[str]] = Field(
        description="Model ids per model_version; the first is the default.",
        examples=[{"sam3": ["facebook/sam3"], "classic": ["default"]}],
    )
    loaded: list[list[str]] = Field(
        description="[model_version, model_id] of each model in memory.",
        examples=[[["classic", "default"]]],
    )
    ready: dict[str, bool] = Field(
        description="Per model_version: whether it can be loaded now, offline.",
        examples=[{"sam3": False, "classic": True}],
    )


class Cleared(BaseModel):
    """``DELETE /models``: every loaded model was released."""

    status: Literal["cleared"] = "cleared"


class ErrorDetail(BaseModel):
    """Every error answer: what is wrong and how to fix it."""

    detail: str = Field(examples=["Unknown output_format 'shp'. Choose one of: geojson, ..."])


JobState = Literal["queued", "running", "done", "failed", "cancelled"]


class JobCreated(BaseModel):
    """``POST /jobs/segment/{mode}`` (202): the job and where to follow it.

    The URLs are paths on this server (behind the sidecar, prefix them with ``/ml``).
    """

    job_id: str = Field(examples=["3f2b9c0d4e5a6b7c8d9e0f1a2b3c4d5e"])
    status_url: str = Field(description="GET: the job's status.", examples=["/jobs/3f2b…"])
    events_url: str = Field(
        description="GET: server-sent events, progress then the end status.",
        examples=["/jobs/3f2b…/events"],
    )
    result_url: str = Field(
        description="GET: the answer, once done (`?output_format=` for another format).",
        examples=["/jobs/3f2b…/result"],
    )


class JobProgress(BaseModel):
    """How far a run is: ``done`` of ``total`` steps (windows/tiles, then finishing steps).

    Both are 0 until the run reports its first step.
    """

    done: int = Field(ge=0, examples=[3])
    total: int = Field(ge=0, examples=[12])


class JobStatus(BaseModel):
    """``GET /jobs/{id}`` (and every server-sent event's data): where a job stands."""

    status: JobState = Field(
        description="queued (waiting for a worker or memory), running, or an end status: "
        "done, failed (see detail), cancelled."
    )
    progress: JobProgress
    detail: str | None = Field(
        default=None,
        description="Why the job failed (the detail the synchronous call would have given).",
    )


class ImageInfo(BaseModel):
    """An image kept by ``POST /images``: what further prompts name, and what it is."""

    image_id: str = Field(description="Give it as `image_id` instead of `file` or `source`.")
    width: int = Field(description="Pixels.")
    height: int = Field(description="Pixels.")
    count: int = Field(description="Bands.")
    crs: str | None = Field(description="`EPSG:code`, else WKT; null: pixel coordinates.")
    bounds_4326: list[float] | None = Field(
        description="`[west, south, east, north]` in EPSG:4326; null without a CRS."
    )
