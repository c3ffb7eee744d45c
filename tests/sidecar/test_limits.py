"""Size, concurrency and time limits: 413 (both ways), 429, 504, and 503 for a dead backend."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from support.servers import ServerProcess, free_port

from .helpers import fake_backend, fake_cmd, ml_segment_form, raw_request, wait_for

MIB = 1024 * 1024
LIMIT = 100 * MIB


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[ServerProcess]:
    with fake_backend("echo", tmp_path / "echo.log") as server:
        yield server


@pytest.fixture
def sidecar(start_sidecar: Callable[..., ServerProcess], echo: ServerProcess) -> ServerProcess:
    return start_sidecar(GEOLIBRE_ML_SAMGEO_URL=echo.url)


def chunked(total: int, chunk: int = MIB) -> Iterator[bytes]:
    """``total`` bytes in ``chunk``-sized pieces (sent without a Content-Length)."""
    block = b"\x5a" * chunk
    while total > 0:
        yield block[: min(chunk, total)]
        total -= chunk


def test_an_upload_declared_too_large_is_refused_before_its_body(sidecar: ServerProcess) -> None:
    """Only the headers are sent: the answer comes without a byte of the body."""
    host = urlsplit(sidecar.url).netloc.encode()
    status, body = raw_request(
        sidecar.url,
        b"POST /ml/segment/text HTTP/1.1\r\nHost: "
        + host
        + b"\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: "
        + str(LIMIT + 1).encode(),
    )
    assert status == 413
    assert b"100 MiB" in body
    assert "segment/text" not in (sidecar.log_path.parent / "echo.log").read_text()


def test_an_upload_at_the_limit_passes(sidecar: ServerProcess) -> None:
    answer = httpx.post(f"{sidecar.url}/ml/segment/text", content=chunked(LIMIT), timeout=60)
    assert answer.status_code == 207
    assert answer.json()["body"]["size"] == LIMIT


def test_an_upload_without_length_is_refused_once_past_the_limit(sidecar: ServerProcess) -> None:
    answer = httpx.post(
        f"{sidecar.url}/ml/segment/text", content=chunked(LIMIT + MIB // 2), timeout=60
    )
    assert answer.status_code == 413
    assert "100 MiB" in answer.json()["detail"]
    # The sidecar is fine afterwards, and so is the backend.
    assert httpx.post(f"{sidecar.url}/ml/segment/text", content=b"abc").status_code == 207


def test_a_fifth_segmentation_in_flight_gets_429(sidecar: ServerProcess) -> None:
    """Four uploads are held open by their clients; a fifth is refused, then accepted."""
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b"first part"
        release.wait(30)
        yield b"last part"

    def held(mode: str) -> httpx.Response:
        return httpx.post(f"{sidecar.url}/ml/segment/{mode}", content=slow_body(), timeout=60)

    modes = ["text", "automatic", "predict", "text"]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(held, mode) for mode in modes]
        try:
            wait_for(lambda: "4 of 4 segmentations in flight" in sidecar.log(), what="4 in flight")
            refused = httpx.post(f"{sidecar.url}/ml/segment/text", content=b"fifth")
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "5"
            assert "4 segmentations are already running" in refused.json()["detail"]
            # Other endpoints are not rationed.
            assert httpx.get(f"{sidecar.url}/ml/models").status_code == 200
            assert httpx.get(f"{sidecar.url}/ml/status").json()["available"] is True
        finally:
            release.set()
        answers = [future.result() for future in futures]
    assert [a.status_code for a in answers] == [207] * 4
    assert all(a.json()["body"]["size"] == len(b"first partlast part") for a in answers)
    assert httpx.post(f"{sidecar.url}/ml/segment/text", content=b"sixth").status_code == 207


def test_a_hanging_backend_gets_504_after_the_proxy_timeout(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path
) -> None:
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_CMD=fake_cmd("hang"), GEOLIBRE_ML_PROXY_TIMEOUT="2")
    form = ml_segment_form("text", scene_tif.read_bytes(), "scene.tif", prompt="water")
    answer = httpx.post(f"{sidecar.url}/ml/segment/text", files=form, timeout=30)
    assert answer.status_code == 504
    assert "did not answer within 2 s" in answer.json()["detail"]
    # The slot was given back, the sidecar still answers.
    assert httpx.get(f"{sidecar.url}/ml/status").json()["available"] is True


def test_a_dead_external_url_is_unavailable_and_segmentation_503(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_URL=dead)
    status = httpx.get(f"{sidecar.url}/ml/status").json()
    assert status["available"] is False
    assert status["url"] == dead
    assert "GEOLIBRE_ML_SAMGEO_URL" in status["message"]
    assert status["default_model"] == "classic"
    for mode in ("text", "automatic", "predict"):
        form = ml_segment_form(mode, scene_tif.read_bytes(), "scene.tif", boxes=[[1, 1, 9, 9]])
        answer = httpx.post(f"{sidecar.url}/ml/segment/{mode}", files=form)
        assert answer.status_code == 503
        assert dead in answer.json()["detail"]
    assert httpx.get(f"{sidecar.url}/ml/models").status_code == 503
    started = httpx.post(f"{sidecar.url}/ml/start")
    assert started.status_code == 503
    assert started.json()["available"] is False
    assert "GEOLIBRE_ML_SAMGEO_URL" in started.json()["detail"]


def test_a_bad_external_url_is_explained(start_sidecar: Callable[..., ServerProcess]) -> None:
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_URL="ftp://user:pw-1234@host/")
    status = httpx.get(f"{sidecar.url}/ml/status").json()
    assert status["available"] is False
    assert "http://" in status["message"]
    assert "pw-1234" not in status["message"]
    answer = httpx.post(f"{sidecar.url}/ml/segment/text", content=b"x")
    assert answer.status_code == 503
    assert "pw-1234" not in answer.text + sidecar.log()


def test_a_client_that_leaves_gives_its_slot_back(
    start_sidecar: Callable[..., ServerProcess],
) -> None:
    """Clients that give up on a slow backend do not use up the four segmentation slots."""
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_CMD=fake_cmd("hang"))
    assert httpx.post(f"{sidecar.url}/ml/start", timeout=60).status_code == 200
    for i in range(1, 7):
        with pytest.raises(httpx.ReadTimeout):  # not a 429 answer
            httpx.post(f"{sidecar.url}/ml/segment/text", content=b"x", timeout=0.5)
        wait_for(lambda i=i: sidecar.log().count("the client left") == i, what="the sidecar")


def test_clients_that_wait_for_their_answers_never_get_429(sidecar: ServerProcess) -> None:
    """Four clients, each starting its next segmentation as soon as it has read the last
    answer, never have more than four in flight: none is refused."""
    rounds = 30

    def client(path: str) -> list[int]:
        # Answers of 1 MiB with a Content-Length: the client has the whole answer at its
        # last byte, while the sidecar is still relaying it.
        with httpx.Client(base_url=sidecar.url, timeout=30) as http:
            return [
                http.post(f"{path}?answer_bytes={MIB}", content=b"x" * 2000).status_code
                for _ in range(rounds)
            ]

    paths = ["/ml/segment/text", "/ml/segment/automatic", "/ml/segment/predict"]
    paths.append("/ml/jobs/segment/text")
    with ThreadPoolExecutor(4) as pool:
        codes = [code for codes in pool.map(client, paths) for code in codes]
    assert codes == [207] * (4 * rounds), f"{codes.count(429)} refused with 429"
