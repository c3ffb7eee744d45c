"""Credentials in ``GEOLIBRE_ML_SAMGEO_URL`` never appear in an answer, whatever the URL's form
and whatever the answer: status, start, models, segmentation, jobs, errors of every kind."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from support.servers import ServerProcess, free_port

from .helpers import ml_segment_form

USER, PASSWORD, KEY = "alice", "hunter2-secret", "k3y-value"


def secret_forms() -> list[str]:
    """Every way the credentials could leak: as written, encoded, as basic authentication."""
    pair = f"{USER}:{PASSWORD}"
    return [
        PASSWORD,
        quote(PASSWORD, safe=""),
        KEY,
        pair,
        base64.b64encode(pair.encode()).decode(),
    ]


def every_answer(sidecar: ServerProcess, scene_tif: Path) -> list[httpx.Response]:
    """One request to each endpoint that may talk about the backend."""
    url = sidecar.url
    image = scene_tif.read_bytes()
    answers = [
        httpx.get(f"{url}/ml/status"),
        httpx.post(f"{url}/ml/start"),
        httpx.get(f"{url}/ml/models"),
        httpx.get(f"{url}/ml/jobs/0123abcd"),
        httpx.delete(f"{url}/ml/jobs/0123abcd"),
        httpx.get(f"{url}/ml/jobs/0123abcd/events"),
    ]
    for mode in ("text", "automatic", "predict"):
        form = ml_segment_form(mode, image, "scene.tif", prompt="water", boxes=[[1, 1, 9, 9]])
        answers.append(httpx.post(f"{url}/ml/segment/{mode}", files=form))
        answers.append(httpx.post(f"{url}/ml/jobs/segment/{mode}", files=form))
    return answers


def assert_no_secret(answers: list[httpx.Response], log: str) -> None:
    for answer in answers:
        shown = answer.text + "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
        for secret in secret_forms():
            assert secret not in shown, (answer.request.url, shown)
    for secret in secret_forms():
        assert secret not in log


@pytest.mark.parametrize(
    "written",
    [
        "{user}:{password}@127.0.0.1:{port}",  # no scheme: the case
        "{user}:{password}@127.0.0.1:{port}/?key={key}",
        "//{user}:{password}@127.0.0.1:{port}",
        "http:{user}:{password}@127.0.0.1:{port}",
        "localhost:{port}?key={key}",
    ],
)
def test_a_url_without_scheme_is_refused_without_showing_it(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path, written: str
) -> None:
    url = written.format(user=USER, password=PASSWORD, port=free_port(), key=KEY)
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_URL=url)
    status = httpx.get(f"{sidecar.url}/ml/status").json()
    assert status["available"] is False
    assert "GEOLIBRE_ML_SAMGEO_URL" in status["message"]
    assert "http://" in status["message"]  # says how to write it
    answers = every_answer(sidecar, scene_tif)
    assert [a.status_code for a in answers[1:]] == [503] * (len(answers) - 1)
    assert all(a.json()["detail"] == status["message"] for a in answers[1:])
    assert_no_secret(answers, sidecar.log())
    assert "GEOLIBRE_ML_SAMGEO_URL" in sidecar.log()  # the start-up warning


@pytest.mark.parametrize(
    "written",
    [
        "http://{user}:{password}@127.0.0.1:{port}",
        "http://{user}:{password}@127.0.0.1:{port}/prefix/?key={key}",
        "https://{user}:{password}@127.0.0.1:{port}",
        "http://{user}:{quoted}@localhost:{port}",
    ],
)
def test_a_dead_url_with_credentials_is_unavailable_without_showing_them(
    start_sidecar: Callable[..., ServerProcess], scene_tif: Path, written: str
) -> None:
    """Connection refused on every path: the answers name the server, redacted."""
    port = free_port()
    url = written.format(
        user=USER, password=PASSWORD, quoted=quote(PASSWORD, safe=""), port=port, key=KEY
    )
    sidecar = start_sidecar(GEOLIBRE_ML_SAMGEO_URL=url)
    answers = every_answer(sidecar, scene_tif)
    status = answers[0].json()
    assert status["available"] is False
    assert status["url"].startswith(url.split(":", 1)[0] + "://***@")
    assert [a.status_code for a in answers[1:]] == [503] * (len(answers) - 1)
    assert all("***@" in a.json()["detail"] for a in answers[1:])
    assert_no_secret(answers, sidecar.log())
