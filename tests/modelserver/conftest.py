"""A real ``python -m geolibre_ml model-server`` process for the HTTP tests.

The server runs with its own ``TMPDIR``, so every test can check that no request,
successful or not, leaves a file behind; and no answer may be a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.servers import ServerProcess, run_server

from .helpers import Images, checked_client, write_images


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """The test scene as multispectral GeoTIFF, RGB GeoTIFF, PNG and JPEG."""
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def server_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model server's TMPDIR: empty whenever no request is in flight."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, server_tmpdir: Path
) -> Iterator[ServerProcess]:
    """One model server for the session."""
    log_path = tmp_path_factory.mktemp("server-log") / "model-server.log"
    with run_server(
        ["model-server"], log_path=log_path, env={"TMPDIR": str(server_tmpdir)}
    ) as process:
        yield process
        log = process.log()
    assert "Unhandled error" not in log, log
    assert "Traceback" not in log, log


@pytest.fixture
def client(server: ServerProcess, server_tmpdir: Path) -> Iterator[httpx.Client]:
    """An HTTP client for the session's server; afterwards, the server's TMPDIR is empty."""
    with checked_client(server.url, server_tmpdir) as http:
        yield http
