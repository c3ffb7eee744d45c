"""Fixtures for the ``geolibre-ml segment`` tests: rasters and a command runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_rasters import write_png, write_scene


@pytest.fixture
def scene_tif(tmp_path: Path) -> Path:
    return write_scene(tmp_path / "scene.tif")


@pytest.fixture
def scene_png(tmp_path: Path) -> Path:
    return write_png(tmp_path / "scene.png")


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m geolibre_ml segment ARGS...`` in ``tmp_path``; stdin closed."""

    def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "geolibre_ml", "segment", *map(str, args)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )

    return run
