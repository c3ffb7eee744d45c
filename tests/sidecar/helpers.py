"""Helpers for the sidecar tests: the sidecar as a process, GeoLibre's form, process checks."""

from __future__ import annotations

import contextlib
import json
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import psutil
from rasterio.enums import ColorInterp

from support.rasters import scene, write_raster
from support.servers import ServerProcess, clean_env, run_script, run_server

HERE = Path(__file__).resolve().parent
FAKE_BACKEND = HERE / "fake_backend.py"

HEIGHT, WIDTH = 120, 160


def write_scene(path: Path) -> Path:
    """A 4-band uint16 GeoTIFF (UTM 33N, 10 m pixels) with a lake and a forest."""
    planes = scene(HEIGHT, WIDTH)
    data = np.stack([planes[b] for b in ("red", "green", "blue", "nir")])
    return write_raster(
        path,
        (data * 10000).astype(np.uint16),
        descriptions=["red", "green", "blue", "nir"],
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined],
    )


def fake_cmd(mode: str) -> str:
    """``GEOLIBRE_ML_SAMGEO_CMD`` for one of ``fake_backend.py``'s modes."""
    return shlex.join([sys.executable, str(FAKE_BACKEND), mode])


def sidecar_env(bin_dir: Path, **overrides: str) -> dict[str, str]:
    """A sidecar environment with no GeoLibre variable inherited and ``PATH`` = ``bin_dir``
    plus the system folders (so ``samgeo-api`` is found only where a test puts it)."""
    return clean_env(PATH=f"{bin_dir}:/usr/bin:/bin", **overrides)


@contextlib.contextmanager
def run_sidecar(log_path: Path, env: dict[str, str]) -> Iterator[ServerProcess]:
    """``geolibre-ml serve`` on a free loopback port, until the block ends."""
    with run_server(["serve"], log_path=log_path, env=env, health_timeout=30) as server:
        yield server


def ml_segment_form(
    mode: str,
    image: bytes,
    filename: str,
    *,
    model_version: str | None = None,
    output_format: str | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    prompt: str | None = None,
    confidence_threshold: float | None = None,
    point_coords: list | None = None,
    point_labels: list | None = None,
    boxes: list | None = None,
    point_crs: str | None = None,
) -> list[tuple[str, Any]]:
    """The multipart fields GeoLibre's ``mlSegment`` sends, in its order, as httpx ``files``.

    A transcription of ``packages/processing/src/sidecar-client.ts``: ``file`` first, then
    ``model_version`` (default ``sam3``), ``output_format`` (default ``geojson``), the size
    filters when given, then the mode's fields; JSON as ``JSON.stringify`` writes it.
    """

    def field(name: str, value: object) -> tuple[str, tuple[None, str]]:
        return (name, (None, str(value)))

    def js_json(value: object) -> str:
        return json.dumps(value, separators=(",", ":"))

    form: list[tuple[str, Any]] = [("file", (filename, image, "image/tiff"))]
    form.append(field("model_version", model_version or "sam3"))
    form.append(field("output_format", output_format or "geojson"))
    if min_size is not None:
        form.append(field("min_size", min_size))
    if max_size is not None:
        form.append(field("max_size", max_size))
    if mode == "text":
        form.append(field("prompt", prompt or ""))
        if confidence_threshold is not None:
            form.append(field("confidence_threshold", confidence_threshold))
    if mode == "predict":
        if point_coords:
            form.append(field("point_coords", js_json(point_coords)))
        if point_labels:
            form.append(field("point_labels", js_json(point_labels)))
        if boxes:
            form.append(field("boxes", js_json(boxes)))
        if point_crs:
            form.append(field("point_crs", point_crs))
    return form


def wait_for(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def children(pid: int) -> list[psutil.Process]:
    """The live descendants of process ``pid``."""
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if alive(p)]
    except psutil.NoSuchProcess:
        return []


def alive(process: psutil.Process) -> bool:
    """Whether ``process`` still runs (a zombie does not)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def model_server_children(pid: int) -> list[psutil.Process]:
    """The descendants of ``pid`` that are model servers (ours or a fake one)."""
    found = []
    for process in children(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            cmdline = " ".join(process.cmdline())
            if "model-server" in cmdline or "fake_backend.py" in cmdline:
                found.append(process)
    return found


def fake_backend(mode: str, log_path: Path) -> contextlib.AbstractContextManager[ServerProcess]:
    """``fake_backend.py MODE`` as a server process."""
    return run_script([sys.executable, str(FAKE_BACKEND), mode], log_path)


def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (request line and headers, CRLF-separated) as is, then ``body``.

    Returns the answer's status and body. ``Connection: close`` is added, so that the
    answer ends with the connection.
    """
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head + b"\r\nConnection: close\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]
