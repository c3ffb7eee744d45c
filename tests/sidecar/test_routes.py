"""The sidecar's routes: wrong methods on ``/ml/*`` get 405 with the route's own methods, not
the web app's answers; unknown ``/ml/*`` paths get a JSON 404; the web app still answers ``/``."""

from __future__ import annotations

import httpx
import pytest

from support.servers import ServerProcess


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/ml/start", {"POST"}),
        ("OPTIONS", "/ml/segment/text", {"POST"}),
        ("PUT", "/ml/segment/automatic", {"POST"}),
        ("DELETE", "/ml/segment/predict", {"POST"}),
        ("POST", "/ml/status", {"GET"}),
        ("DELETE", "/ml/models", {"GET"}),
        ("PUT", "/ml/jobs/0123abcd", {"GET", "POST", "DELETE"}),
        ("GET", "/shutdown", {"POST"}),
        ("POST", "/health", {"GET"}),
    ],
)
def test_a_wrong_method_gets_405_with_the_routes_methods(
    proxied: ServerProcess, method: str, path: str, allowed: set[str]
) -> None:
    answer = httpx.request(method, f"{proxied.url}{path}")
    assert answer.status_code == 405
    assert {m.strip() for m in answer.headers["allow"].split(",")} == allowed
    detail = answer.json()["detail"]
    assert method in detail and path in detail
    assert all(m in detail for m in allowed)  # says what to use instead
    assert proxied.process.poll() is None  # GET /shutdown stopped nothing


def test_an_unknown_ml_path_gets_a_json_404(proxied: ServerProcess) -> None:
    answer = httpx.get(f"{proxied.url}/ml/nothing-here")
    assert answer.status_code == 404
    assert "/ml/nothing-here" in answer.json()["detail"]
    assert "/docs" in answer.json()["detail"]


def test_the_web_app_is_still_served_and_preflights_still_work(proxied: ServerProcess) -> None:
    page = httpx.get(f"{proxied.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert httpx.head(f"{proxied.url}/").status_code == 200
    assert httpx.get(f"{proxied.url}/no-such-page.js").status_code == 404
    assert httpx.post(f"{proxied.url}/").status_code == 405
    preflight = httpx.options(
        f"{proxied.url}/ml/segment/text",
        headers={"Origin": "tauri://localhost", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "tauri://localhost"
