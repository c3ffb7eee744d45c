"""Serving classic requests never imports a deep-learning framework."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .helpers import write_images

# Runs in a fresh interpreter: records every attempt to import a heavy framework
# (whether or not it is installed here), builds the app, and serves every kind of
# classic request through FastAPI's TestClient.
CHILD = r"""
import importlib.abc
import json
import sys
import warnings

warnings.simplefilter("ignore")
HEAVY = {"torch", "torchvision", "transformers", "timm", "accelerate", "tensorflow", "jax"}
attempts = []


class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            attempts.append(name)
        return None


sys.meta_path.insert(0, Spy())

from fastapi.testclient import TestClient

from geolibre_ml.modelserver.app import create_app

tif, png = sys.argv[1], sys.argv[2]
statuses = []
with TestClient(create_app()) as client:
    statuses.append(client.get("/health").status_code)
    statuses.append(client.get("/models").status_code)
    for path in (tif, png):
        for mode, data in (
            ("text", {"prompt": "water"}),
            ("automatic", {"output_format": "geotiff"}),
            ("predict", {"boxes": "[[10, 10, 60, 60]]", "output_format": "detections"}),
        ):
            with open(path, "rb") as handle:
                response = client.post(
                    f"/segment/{mode}",
                    files={"file": (path, handle.read())},
                    data={**data, "model_version": "classic"},
                )
            statuses.append(response.status_code)
    statuses.append(client.delete("/models").status_code)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print(json.dumps({"attempts": attempts, "loaded": loaded, "statuses": statuses}))
"""


def test_classic_requests_never_import_torch(tmp_path: Path) -> None:
    images = write_images(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(images.multispectral), str(images.png)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200] * 9
    assert report["attempts"] == []
    assert report["loaded"] == []
