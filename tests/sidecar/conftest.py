"""Real processes for the sidecar tests: a model server, and sidecars in front of it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.servers import ServerProcess, run_server

from .helpers import run_sidecar, sidecar_env, write_scene


@pytest.fixture(scope="session")
def scene_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small 4-band GeoTIFF with a lake and a forest."""
    return write_scene(tmp_path_factory.mktemp("sidecar-images") / "scene.tif")


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Our model server, started once for the session."""
    log = tmp_path_factory.mktemp("sidecar-model-server") / "model-server.log"
    with run_server(["model-server"], log_path=log) as server:
        yield server


@pytest.fixture(scope="session")
def proxied(
    tmp_path_factory: pytest.TempPathFactory, model_server: ServerProcess
) -> Iterator[ServerProcess]:
    """A sidecar in front of the session's model server (``GEOLIBRE_ML_SAMGEO_URL``)."""
    base = tmp_path_factory.mktemp("sidecar-proxied")
    env = sidecar_env(base, GEOLIBRE_ML_SAMGEO_URL=model_server.url)
    with run_sidecar(base / "sidecar.log", env) as server:
        yield server


@pytest.fixture
def start_sidecar(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start sidecars with a given environment; all are stopped when the test ends.

    ``start_sidecar(**env)``: variables over a clean environment (see ``sidecar_env``).
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    with contextlib.ExitStack() as stack:
        count = 0

        def start(**env: str) -> ServerProcess:
            nonlocal count
            count += 1
            log = tmp_path / f"sidecar-{count}.log"
            return stack.enter_context(run_sidecar(log, sidecar_env(bin_dir, **env)))

        yield start
