"""Launching the model server: on first use, once, from the right command, again after a crash."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from support.servers import ServerProcess

from .helpers import fake_cmd, ml_segment_form, model_server_children, wait_for

MIB = 1024 * 1024


def segment_water(sidecar: ServerProcess, scene_tif: Path) -> httpx.Response:
    form = ml_segment_form(
        "text", scene_tif.read_bytes(), "scene.tif", model_version="classic", prompt="water"
    )
    return httpx.post(f"{sidecar.url}/ml/segment/text", files=form, timeout=120)


def only_child(sidecar: ServerProcess) -> psutil.Process:
    found = model_server_children(sidecar.process.pid)
    assert len(found) == 1, found
    return found[0]


def test_first_use_launches_our_model_server_with_the_sidecar_python(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path
) -> None:
    """``PATH`` has no ``samgeo-api``: our own server starts, with ``python -m geolibre_ml``."""
    sidecar = start_sidecar()
    before = httpx.get(f"{sidecar.url}/ml/status").json()
    assert before["available"] is True
    assert "starts on first use" in before["message"]
    assert "url" not in before
    assert before["default_model"] == "classic"
    assert model_server_children(sidecar.process.pid) == []  # the status launched nothing

    answer = segment_water(sidecar, scene_tif)
    assert answer.status_code == 200, answer.text
    assert answer.json()["features"][0]["properties"]["prompt"] == "water"

    child = only_child(sidecar)
    argv = child.cmdline()
    assert argv[:4] == [sys.executable, "-m", "geolibre_ml", "model-server"]
    assert argv[4:7] == ["--host", "127.0.0.1", "--port"]
    after = httpx.get(f"{sidecar.url}/ml/status").json()
    assert after["available"] is True
    assert after["url"] == f"http://127.0.0.1:{argv[7]}"
    assert after["models"]["classic"] == ["default"]
    assert after["ready"]["classic"] is True
    # The child's output is in the sidecar's log.
    assert f"[model server {child.pid}]" in sidecar.log()


def test_concurrent_first_requests_start_one_child(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path
) -> None:
    sidecar = start_sidecar()

    def request(i: int) -> int:
        if i % 2:
            return httpx.get(f"{sidecar.url}/ml/models", timeout=120).status_code
        return segment_water(sidecar, scene_tif).status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(request, range(4))) == [200] * 4
    only_child(sidecar)
    assert sidecar.log().count("Starting the model server") == 1


def test_start_launches_now_and_answers_like_status(
    start_sidecar: Callable[..., ServerProcess],
) -> None:
    sidecar = start_sidecar()
    started = httpx.post(f"{sidecar.url}/ml/start", timeout=120)
    assert started.status_code == 200
    body = started.json()
    assert body["available"] is True
    assert body["url"].startswith("http://127.0.0.1:")
    assert set(body) >= {"available", "message", "default_model", "url", "version", "models"}
    child = only_child(sidecar)
    # Starting again does not start another one.
    assert httpx.post(f"{sidecar.url}/ml/start").json()["url"] == body["url"]
    assert only_child(sidecar).pid == child.pid


def test_samgeo_api_on_path_comes_before_our_server_and_the_command_before_both(
    start_sidecar: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"  # on the sidecar's PATH (see start_sidecar)
    marker = tmp_path / "samgeo-api-args"
    script = bin_dir / "samgeo-api"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {shlex.quote(str(marker))}\n'
        f'exec {shlex.quote(sys.executable)} -m geolibre_ml model-server "$@"\n'
    )
    script.chmod(0o755)

    sidecar = start_sidecar()
    status = httpx.get(f"{sidecar.url}/ml/status").json()
    assert f"samgeo-api ({script})" in status["message"]
    assert status["default_model"] == "sam3"  # samgeo-api serves SAM models only
    assert httpx.post(f"{sidecar.url}/ml/start", timeout=120).status_code == 200
    args = marker.read_text().split()
    assert args[:3] == ["--host", "127.0.0.1", "--port"]

    marker.unlink()
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_CMD=fake_cmd("echo"))
    assert httpx.get(f"{sidecar.url}/ml/models").json()["models"] == {"fake": ["one"]}
    assert not marker.exists()


def test_a_command_that_exits_at_once_is_reported(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path
) -> None:
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_CMD=fake_cmd("exit"))
    answer = segment_water(sidecar, scene_tif)
    assert answer.status_code == 503
    detail = answer.json()["detail"]
    assert "exited during startup with status 3" in detail
    assert "cannot start (on purpose)" in detail
    status = httpx.get(f"{sidecar.url}/ml/status").json()
    assert status["available"] is False
    assert status["message"] == detail
    assert model_server_children(sidecar.process.pid) == []


def test_a_command_that_never_becomes_healthy_is_stopped(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path
) -> None:
    sidecar = start_sidecar(
        GEOLIBRE_ML_SAMGEO_CMD=fake_cmd("unhealthy"), GEOLIBRE_ML_START_TIMEOUT="1.5"
    )
    answer = segment_water(sidecar, scene_tif)
    assert answer.status_code == 503
    assert "did not answer /health within 1.5 s" in answer.json()["detail"]
    assert model_server_children(sidecar.process.pid) == []


def test_a_command_that_is_not_there_is_explained(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path
) -> None:
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_CMD="no-such-model-server --flag")
    status = httpx.get(f"{sidecar.url}/ml/status").json()
    assert status["available"] is False
    assert "'no-such-model-server'" in status["message"]
    answer = segment_water(sidecar, scene_tif)
    assert answer.status_code == 503
    assert answer.json()["detail"] == status["message"]


def test_killed_during_the_upload_gives_502_then_a_fresh_child(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path
) -> None:
    sidecar = start_sidecar()
    assert httpx.post(f"{sidecar.url}/ml/start", timeout=120).status_code == 200
    child = only_child(sidecar)
    written_before = child.io_counters().write_chars
    release = threading.Event()
    head = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.tif"\r\n'
        b"Content-Type: image/tiff\r\n\r\n"
    )

    def body() -> Iterator[bytes]:
        yield head
        block = b"\x00" * MIB
        for _ in range(8):
            yield block
        release.wait(30)
        for _ in range(8):
            yield block

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            httpx.post,
            f"{sidecar.url}/ml/segment/text",
            content=body(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
            timeout=60,
        )
        try:
            # The upload is flowing into the model server (which spools it to disk): kill it.
            wait_for(
                lambda: child.io_counters().write_chars - written_before > 4 * MIB,
                what="the upload to reach the model server",
            )
            os.kill(child.pid, signal.SIGKILL)
        finally:
            release.set()
        answer = future.result()
    status = httpx.get(f"{sidecar.url}/ml/status").json()
    assert status["available"] is True
    assert f"(pid {child.pid}) exited with status -9" in status["message"]
    assert answer.status_code == 502
    assert "failed during the request" in answer.json()["detail"]
    assert "started again on the next request" in answer.json()["detail"]

    again = segment_water(sidecar, scene_tif)
    assert again.status_code == 200
    fresh = only_child(sidecar)
    assert fresh.pid != child.pid
    assert "exited with status -9; starting a new one" in sidecar.log()


def test_killed_while_computing_gives_502_then_a_fresh_child(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path
) -> None:
    """The backend has the whole upload and is working on it when it dies."""
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_CMD=fake_cmd("hang"))
    assert httpx.post(f"{sidecar.url}/ml/start", timeout=60).status_code == 200
    child = only_child(sidecar)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(segment_water, sidecar, scene_tif)
        wait_for(lambda: "now hanging" in sidecar.log(), what="the backend to read the upload")
        os.kill(child.pid, signal.SIGKILL)
        answer = future.result()
    assert answer.status_code == 502
    assert httpx.post(f"{sidecar.url}/ml/start", timeout=60).status_code == 200
    assert only_child(sidecar).pid != child.pid
