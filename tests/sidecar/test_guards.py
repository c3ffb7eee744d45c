"""The sidecar's guards: the token, loopback ``Host`` only, and CORS for the listed origins."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from support.servers import ServerProcess

from .helpers import raw_request

TOKEN = "s3cret-t0ken"
GEOLIBRE_ORIGINS = [
    "tauri://localhost",
    "http://tauri.localhost",
    "http://localhost:5173",
    "http://127.0.0.1:5173",
]


@pytest.fixture
def guarded(
    start_sidecar: Callable[..., ServerProcess], model_server: ServerProcess
) -> ServerProcess:
    return start_sidecar(GEOLIBRE_ML_SAMGEO_URL=model_server.url, GEOLIBRE_SIDECAR_TOKEN=TOKEN)


def test_without_a_configured_token_no_token_is_needed(proxied: ServerProcess) -> None:
    assert httpx.get(f"{proxied.url}/ml/status").status_code == 200
    assert (
        httpx.get(f"{proxied.url}/ml/status", headers={"X-GeoLibre-Token": "x"}).status_code == 200
    )


def test_a_configured_token_is_required_everywhere_but_health(guarded: ServerProcess) -> None:
    url = guarded.url
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    for path in ("/ml/status", "/ml/models", "/", "/docs"):
        answer = httpx.get(f"{url}{path}")
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "X-GeoLibre-Token" in answer.json()["detail"]
    for headers in (
        {"X-GeoLibre-Token": "wrong"},
        {"X-GeoLibre-Token": TOKEN + "x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
    ):
        assert httpx.get(f"{url}/ml/status", headers=headers).status_code == 401, headers
    assert httpx.post(f"{url}/ml/segment/text", content=b"x").status_code == 401
    assert httpx.post(f"{url}/shutdown").status_code == 401
    assert guarded.process.poll() is None
    for headers in (
        {"X-GeoLibre-Token": TOKEN},
        {"Authorization": f"Bearer {TOKEN}"},
        {"Authorization": f"bearer {TOKEN}"},
    ):
        answer = httpx.get(f"{url}/ml/status", headers=headers)
        assert answer.status_code == 200, headers
        assert answer.json()["available"] is True


def test_odd_header_bytes_are_a_mismatch_not_a_crash(guarded: ServerProcess) -> None:
    host = urlsplit(guarded.url).netloc.encode()
    for header in (
        b"X-GeoLibre-Token: \xff\xfe\x80" + TOKEN.encode(),
        b"Authorization: Bearer \xc3\x28\xa0",
        b"X-GeoLibre-Token: " + TOKEN.encode() + b"\xff",
    ):
        status, body = raw_request(
            guarded.url, b"GET /ml/status HTTP/1.1\r\nHost: " + host + b"\r\n" + header
        )
        assert status == 401, header
        assert b"sidecar token" in body
    status, _ = raw_request(
        guarded.url,
        b"GET /ml/status HTTP/1.1\r\nHost: " + host + b"\r\nX-GeoLibre-Token: " + TOKEN.encode(),
    )
    assert status == 200


def test_a_non_ascii_token_works(
    start_sidecar: Callable[..., ServerProcess], model_server: ServerProcess
) -> None:
    token = "jeton-été-✓"
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_URL=model_server.url, GEOLIBRE_SIDECAR_TOKEN=token)
    host = urlsplit(sidecar.url).netloc.encode()
    head = b"GET /ml/status HTTP/1.1\r\nHost: " + host + b"\r\nX-GeoLibre-Token: "
    assert raw_request(sidecar.url, head + token.encode())[0] == 200
    assert raw_request(sidecar.url, head + token.encode("latin-1", "replace"))[0] == 401


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example", 400),
        ("evil.example:{port}", 400),
        ("127.0.0.1.nip.io:{port}", 400),
        ("[::2]:{port}", 400),
        ("localhost", 200),
        ("localhost:{port}", 200),
        ("127.0.0.1:{port}", 200),
        ("127.1.2.3:{port}", 200),
        ("[::1]:{port}", 200),
    ],
)
def test_only_loopback_hosts_are_answered(proxied: ServerProcess, host: str, status: int) -> None:
    port = urlsplit(proxied.url).port
    answer = httpx.get(f"{proxied.url}/health", headers={"Host": host.format(port=port)})
    assert answer.status_code == status
    if status == 400:
        assert "loopback" in answer.json()["detail"]


def test_a_request_without_host_is_refused(proxied: ServerProcess) -> None:
    status, body = raw_request(proxied.url, b"GET /health HTTP/1.0")
    assert status == 400
    assert b"loopback" in body


@pytest.mark.parametrize("origin", [*GEOLIBRE_ORIGINS, "own"])
def test_geolibre_and_own_origins_get_cors_headers(proxied: ServerProcess, origin: str) -> None:
    origin = proxied.url if origin == "own" else origin
    answer = httpx.get(f"{proxied.url}/ml/status", headers={"Origin": origin})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == origin
    assert "Origin" in answer.headers["vary"]
    preflight = httpx.options(
        f"{proxied.url}/ml/segment/text",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-geolibre-token",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "X-GeoLibre-Token" in preflight.headers["access-control-allow-headers"]


def test_a_preflight_needs_no_token(guarded: ServerProcess) -> None:
    preflight = httpx.options(
        f"{guarded.url}/ml/status",
        headers={"Origin": "tauri://localhost", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "tauri://localhost"


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        "http://localhost:5174",
        "https://localhost:5173",
        "http://localhost",
        "http://tauri.localhost.evil.example",
    ],
)
def test_other_origins_are_refused(proxied: ServerProcess, origin: str) -> None:
    answer = httpx.get(f"{proxied.url}/ml/status", headers={"Origin": origin})
    assert answer.status_code == 403
    assert "access-control-allow-origin" not in answer.headers
    preflight = httpx.options(
        f"{proxied.url}/ml/segment/text",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    # A cross-site form post cannot stop the sidecar.
    assert httpx.post(f"{proxied.url}/shutdown", headers={"Origin": origin}).status_code == 403
    assert proxied.process.poll() is None
