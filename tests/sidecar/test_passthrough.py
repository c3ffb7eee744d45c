"""What exactly crosses the proxy, seen from a backend that echoes what it receives."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from support.servers import ServerProcess

from .helpers import fake_backend

TOKEN = "tok-0123456789"
USER, PASSWORD, KEY = "alice", "s3cr3t-pass", "k3y-value"


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[ServerProcess]:
    with fake_backend("echo", tmp_path / "echo.log") as server:
        yield server


@pytest.fixture
def sidecar(start_sidecar: Callable[..., ServerProcess], echo: ServerProcess) -> ServerProcess:
    """A sidecar with a token, in front of the echo backend, reached with credentials."""
    port = echo.url.rsplit(":", 1)[1]
    return start_sidecar(
        GEOLIBRE_ML_SAMGEO_URL=f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/?key={KEY}",
        GEOLIBRE_SIDECAR_TOKEN=TOKEN,
    )


def test_request_crosses_with_its_method_path_query_and_body(sidecar: ServerProcess) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, every byte value
    answer = httpx.post(
        f"{sidecar.url}/ml/jobs/segment/text?a=1&b=%2Fx",
        content=body,
        headers={
            "Content-Type": "multipart/form-data; boundary=xyz",
            "X-GeoLibre-Token": TOKEN,
            "Origin": "http://localhost:5173",
            "Cookie": "session=abc",
            "X-Custom": "kept-here",
        },
    )
    assert answer.status_code == 207
    echo = answer.json()
    assert echo["method"] == "POST"
    assert echo["path"] == "/jobs/segment/text"
    assert echo["query"] == f"key={KEY}&a=1&b=%2Fx"
    assert echo["body"] == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    headers = echo["headers"]
    assert headers["content-type"] == "multipart/form-data; boundary=xyz"
    assert headers["content-length"] == str(len(body))
    # The URL's credentials become basic authentication; the sidecar's own token, the
    # browser's origin and cookies, and unknown headers stay with the sidecar.
    expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert headers["authorization"] == f"Basic {expected}"
    for private in ("x-geolibre-token", "origin", "cookie", "x-custom"):
        assert private not in headers
    assert headers["x-forwarded-prefix"] == "/ml"
    # Answer headers: the backend's own pass, its CORS headers are replaced by ours.
    assert answer.headers["x-backend"] == "echo"
    assert answer.headers["content-disposition"] == 'attachment; filename="echo.json"'
    assert answer.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_an_upload_without_length_is_streamed_through(sidecar: ServerProcess) -> None:
    chunks = [b"a" * 100_000, b"b" * 1, b"c" * 300_000]

    def body() -> Iterator[bytes]:
        yield from chunks

    answer = httpx.post(
        f"{sidecar.url}/ml/segment/automatic",
        content=body(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 207
    echo = answer.json()
    whole = b"".join(chunks)
    assert echo["path"] == "/segment/automatic"
    assert echo["body"] == {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}
    assert "content-length" not in echo["headers"]
    assert echo["headers"]["transfer-encoding"] == "chunked"


def test_the_answer_streams_before_the_backend_has_finished(
    sidecar: ServerProcess, echo: ServerProcess
) -> None:
    """The first event reaches the client while the backend still holds the last one."""
    headers = {"X-GeoLibre-Token": TOKEN}
    with httpx.stream(
        "GET", f"{sidecar.url}/ml/jobs/stream", headers=headers, timeout=10
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/event-stream"
        events = answer.iter_raw()
        assert next(events) == b"data: first\n\n"
        httpx.post(f"{echo.url}/release")
        assert b"".join(events) == b"data: last\n\n"


def test_credentials_never_show_in_answers_or_logs(
    sidecar: ServerProcess, echo: ServerProcess
) -> None:
    headers = {"X-GeoLibre-Token": TOKEN}
    status = httpx.get(f"{sidecar.url}/ml/status", headers=headers).json()
    assert status["available"] is True
    port = echo.url.rsplit(":", 1)[1]
    assert status["url"] == f"http://***@127.0.0.1:{port}/?key=***"
    # A backend that cannot be reached any more: the error names the URL, redacted.
    echo.process.terminate()
    echo.process.wait(10)
    answers = [
        httpx.get(f"{sidecar.url}/ml/status", headers=headers),
        httpx.post(f"{sidecar.url}/ml/segment/text", content=b"x", headers=headers),
        httpx.get(f"{sidecar.url}/ml/models", headers=headers),
    ]
    assert answers[0].json()["available"] is False
    assert [a.status_code for a in answers[1:]] == [503, 503]
    assert "***@127.0.0.1" in answers[1].json()["detail"]
    for text in [a.text for a in answers] + [sidecar.log()]:
        for secret in (PASSWORD, KEY, TOKEN, f"{USER}:"):
            assert secret not in text


def test_a_cookie_the_backend_set_for_one_client_is_never_sent_for_another(
    sidecar: ServerProcess,
) -> None:
    """The sidecar's client to the backend keeps no cookie jar: each client is on its own."""
    headers = {"X-GeoLibre-Token": TOKEN}
    first = httpx.get(f"{sidecar.url}/ml/jobs/login/set-cookie", headers=headers)
    assert first.status_code == 207
    # The cookie is the first client's to keep (its answer passes unchanged) ...
    assert first.headers["set-cookie"].startswith("backend-session=client-a-only")
    # ... and never reaches the backend again on anyone else's requests.
    others = [
        httpx.get(f"{sidecar.url}/ml/jobs/0123abcd", headers=headers),
        httpx.post(f"{sidecar.url}/ml/segment/text", content=b"x", headers=headers),
        httpx.post(f"{sidecar.url}/ml/jobs/segment/predict", content=b"y", headers=headers),
        httpx.delete(f"{sidecar.url}/ml/jobs/0123abcd", headers=headers),
    ]
    for answer in others:
        assert answer.status_code == 207
        assert "cookie" not in answer.json()["headers"], answer.json()["path"]
