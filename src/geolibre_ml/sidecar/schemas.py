"""Typed answers of the sidecar's own JSON endpoints (they document themselves in /docs).

Optional fields are ``None`` when unknown and left out of the JSON (the routes use
``response_model_exclude_none``), so that clients see exactly the keys they always saw.
GeoLibre's ``sidecar-client.ts`` reads ``available``, ``message`` and ``default_model``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    """``GET /health``: the sidecar itself is up."""

    status: Literal["ok"] = "ok"


class MlStatus(BaseModel):
    """``GET /ml/status``: whether segmentation is available, and the backend's models."""

    available: bool = Field(
        description="Whether a segmentation can be asked for now (the model server is up, "
        "or starts on first use)."
    )
    message: str = Field(description="The state in words; when unavailable, how to fix it.")
    default_model: str = Field(
        description="The model the UI should default to (`sam3` when the backend says it is "
        "ready, else `classic`, unless GEOLIBRE_ML_DEFAULT_MODEL is set).",
        examples=["classic"],
    )
    url: str | None = Field(
        None,
        description="The model server's address, credentials hidden (absent before a "
        "launched server has started).",
    )
    version: str | None = Field(None, description="The model server's version (its /health).")
    # Values as the backend gives them: a samgeo-api's catalogue is relayed, not reshaped.
    models: dict[str, Any] | None = Field(
        None,
        description="Model ids per model_version (the backend's /models).",
        examples=[{"sam3": ["facebook/sam3"], "classic": ["default"]}],
    )
    ready: dict[str, Any] | None = Field(
        None,
        description="Per model_version: whether it can be loaded now (our model server only).",
        examples=[{"sam3": False, "classic": True}],
    )


class MlStart(MlStatus):
    """``POST /ml/start``: the status once the model server has been started (or not)."""

    detail: str | None = Field(
        None, description="Why the model server could not start (503 only); same as message."
    )


class ErrorDetail(BaseModel):
    """An error answer, the model server's style: ``{"detail": "..."}``."""

    detail: str = Field(description="What went wrong and how to fix it.")


class ShuttingDown(BaseModel):
    """``POST /shutdown``: the sidecar stops once this answer has gone."""

    status: Literal["shutting_down"] = "shutting_down"
