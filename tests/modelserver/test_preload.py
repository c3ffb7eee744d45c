"""``geolibre-ml model-server --preload``: models loaded before serving, bad ones refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support.servers import free_port, no_sam3_weights, run_server


@pytest.mark.parametrize("preload", ["classic", "classic:default"])
def test_preload_loads_the_model_before_serving(tmp_path: Path, preload: str) -> None:
    with run_server(
        ["model-server", "--preload", preload], log_path=tmp_path / "server.log"
    ) as server:
        # No request has been made: the model is already in memory.
        models = httpx.get(f"{server.url}/models", timeout=30).json()
        assert models["loaded"] == [["classic", "default"]]
        assert "Preloaded classic:default" in server.log()


@pytest.mark.parametrize(
    ("preload", "expected"),
    [
        ("nonsense", "Unknown model_version 'nonsense'. Known versions: sam3, classic."),
        ("classic:vit_h", "Unknown model_id 'vit_h' for classic. Known ids: default."),
        ("sam3", "SAM 3 is not available"),
        ("sam3:facebook/sam3", "geolibre-ml download-model sam3"),
    ],
)
def test_bad_preload_exits_2_with_one_clear_line(
    preload: str, expected: str, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "geolibre_ml", "model-server", "--preload", preload]
    result = subprocess.run(
        [*command, "--host", "127.0.0.1", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **no_sam3_weights(tmp_path)},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"geolibre-ml model-server: cannot preload {preload!r}: ")
    assert expected in result.stderr
    assert result.stdout == ""
