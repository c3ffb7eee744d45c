"""pytest fixtures for the tests that run segment-geospatial's own code: its install, and its
``samgeo-api`` served on a loopback port.

Registered by tests/conftest.py, so every test folder can use them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.samgeo import SAMGEO_VERSION, SamgeoUnavailable, install_samgeo, run_samgeo_api
from support.servers import ServerProcess


@pytest.fixture(scope="session")
def samgeo_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """segment-geospatial, installed without dependencies (once, then cached in pytest's
    cache folder); ``GEOLIBRE_ML_TEST_SAMGEO_DIR`` names an install to use instead. Its
    tests are skipped when PyPI cannot be reached, and fail when pip fails otherwise."""
    if given := os.environ.get("GEOLIBRE_ML_TEST_SAMGEO_DIR"):
        return Path(given)
    cache = getattr(request.config, "cache", None)
    target = (
        cache.mkdir(f"segment-geospatial-{SAMGEO_VERSION}")
        if cache is not None
        else tmp_path_factory.mktemp("segment-geospatial")
    )
    try:
        return install_samgeo(target, SAMGEO_VERSION)
    except SamgeoUnavailable as exc:
        if exc.offline:
            pytest.skip(f"PyPI is not reachable to install segment-geospatial: {exc}")
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def samgeo_api(
    samgeo_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """segment-geospatial's real ``samgeo-api`` (its ``api.py``, a stand-in model) on a
    loopback port, for the session."""
    log = tmp_path_factory.mktemp("samgeo-api") / "samgeo-api.log"
    with run_samgeo_api(samgeo_dir, log) as server:
        yield server
