"""No orphan model servers: ``/shutdown``, SIGTERM, SIGINT, even SIGKILL end the child too.

Signals go to the sidecar's process alone (``os.kill``), never to its process group, so
that only the sidecar itself can be what stops the model server.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from support.servers import ServerProcess

from .helpers import alive, fake_cmd, ml_segment_form, model_server_children, wait_for


def launched(sidecar: ServerProcess) -> list[psutil.Process]:
    """Start the model server through the sidecar; its processes (exactly one model server)."""
    assert httpx.post(f"{sidecar.url}/ml/start", timeout=120).status_code == 200
    found = model_server_children(sidecar.process.pid)
    assert len(found) == 1
    return found


def assert_all_gone(processes: list[psutil.Process]) -> None:
    wait_for(lambda: not any(alive(p) for p in processes), timeout=15, what="the model server")


def test_shutdown_stops_the_model_server_then_the_sidecar(
    start_sidecar: Callable[..., ServerProcess],
) -> None:
    sidecar = start_sidecar()
    children = launched(sidecar)
    answer = httpx.post(f"{sidecar.url}/shutdown")
    assert answer.status_code == 200
    assert answer.json() == {"status": "shutting_down"}
    # The model server is stopped before the answer.
    assert not any(alive(p) for p in children)
    assert sidecar.process.wait(15) == 0
    assert "Stopping the model server" in sidecar.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_sidecar_stops_the_model_server(
    start_sidecar: Callable[..., ServerProcess], sig: signal.Signals
) -> None:
    sidecar = start_sidecar()
    children = launched(sidecar)
    os.kill(sidecar.process.pid, sig)
    sidecar.process.wait(15)
    assert_all_gone(children)


def test_a_signal_during_a_segmentation_still_stops_everything(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path
) -> None:
    """The model server is stopped at once; the request in flight gets an answer saying so."""
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_CMD=fake_cmd("hang"))
    children = launched(sidecar)
    form = ml_segment_form("text", scene_tif.read_bytes(), "scene.tif", prompt="water")
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(httpx.post, f"{sidecar.url}/ml/segment/text", files=form, timeout=60)
        wait_for(lambda: "now hanging" in sidecar.log(), what="the request to be in flight")
        os.kill(sidecar.process.pid, signal.SIGTERM)
        sidecar.process.wait(30)
        assert_all_gone(children)
        answer = future.result()
    assert answer.status_code == 503
    assert answer.json()["detail"] == "The sidecar is shutting down; its model server was stopped."


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_even_a_killed_sidecar_leaves_no_model_server(
    start_sidecar: Callable[..., ServerProcess],
) -> None:
    sidecar = start_sidecar()
    children = launched(sidecar)
    os.kill(sidecar.process.pid, signal.SIGKILL)
    sidecar.process.wait(15)
    assert_all_gone(children)
