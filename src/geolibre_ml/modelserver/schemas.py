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
