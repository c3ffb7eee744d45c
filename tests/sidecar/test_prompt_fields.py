"""The fields issue 8 adds cross the sidecar unchanged: ``prompts`` and ``box_mode``, with
the model server's answers (and errors) passed back as they are."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from support.servers import ServerProcess


def post(sidecar: ServerProcess, mode: str, image: Path, data: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{sidecar.url}/ml/segment/{mode}",
        files={"file": (image.name, image.read_bytes())},
        data={"model_version": "classic", **data},
        timeout=120,
    )


def test_prompts_through_the_sidecar(proxied: ServerProcess, scene_tif: Path) -> None:
    answer = post(proxied, "text", scene_tif, {"prompts": json.dumps(["water", "trees"])})
    assert answer.status_code == 200, answer.text
    prompts = {f["properties"]["prompt"] for f in answer.json()["features"]}
    assert prompts == {"water", "trees"}
    bad = post(proxied, "text", scene_tif, {"prompt": "water", "prompts": "[1]"})
    assert bad.status_code == 400
    assert "prompts must be a JSON list of strings" in bad.json()["detail"]


def test_box_mode_through_the_sidecar(proxied: ServerProcess, scene_tif: Path) -> None:
    form = {"boxes": "[[10, 10, 60, 50]]"}
    similar = post(proxied, "predict", scene_tif, {**form, "box_mode": "similar"})
    assert similar.status_code == 422
    assert "box_mode=object or model_version=sam3" in similar.json()["detail"]
    assert post(proxied, "predict", scene_tif, {**form, "box_mode": "object"}).status_code == 200
