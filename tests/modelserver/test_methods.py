"""``Allow``: every method a path answers, on OPTIONS and on a 405."""

from __future__ import annotations

import httpx
import pytest

from .helpers import detail


def allow(response: httpx.Response) -> set[str]:
    return {m.strip() for m in response.headers["allow"].split(",")}


def test_options_on_models_lists_get_and_delete(client: httpx.Client) -> None:
    response = client.options("/models")
    assert response.status_code == 204
    assert allow(response) == {"GET", "DELETE", "OPTIONS"}
    assert response.content == b""


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/health", {"GET", "OPTIONS"}),
        ("/segment/text", {"POST", "OPTIONS"}),
        ("/segment/predict", {"POST", "OPTIONS"}),
        ("/docs", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_options_lists_the_methods_of_every_path(
    client: httpx.Client, path: str, methods: set[str]
) -> None:
    response = client.options(path)
    assert response.status_code == 204
    assert allow(response) == methods


def test_a_wrong_method_is_a_405_listing_every_method_of_the_path(client: httpx.Client) -> None:
    response = client.put("/models")
    assert response.status_code == 405
    assert allow(response) == {"GET", "DELETE", "OPTIONS"}
    assert detail(response) == "PUT is not allowed here: this path answers DELETE, GET, OPTIONS."
    wrong = client.get("/segment/text")
    assert wrong.status_code == 405
    assert allow(wrong) == {"POST", "OPTIONS"}
    assert "POST" in detail(wrong)


def test_options_on_an_unknown_path_is_a_404(client: httpx.Client) -> None:
    response = client.options("/nothing")
    assert response.status_code == 404
    assert "allow" not in response.headers
