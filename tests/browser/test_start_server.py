"""The backend unreachable, then Start server from the dialog."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from support.servers import ServerProcess, run_server

from .conftest import Shot, server_env
from .gated_model_server import GATE_ENV, REFUSAL
from .ui import (
    READY,
    WAIT_MS,
    open_app,
    open_dialog,
    record_statuses,
    status_line,
    statuses,
)

pytestmark = pytest.mark.browser

GATED = Path(__file__).resolve().parent / "gated_model_server.py"


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    """The file whose presence lets the gated model server start (absent at first)."""
    return tmp_path / "model-server-set-up"


@pytest.fixture
def gated_sidecar(tmp_path: Path, gate: Path) -> Iterator[ServerProcess]:
    """A sidecar whose launch command fails until ``gate`` exists, then runs our model
    server; one launch has already failed, so its status says it is not available."""
    env = server_env(
        GEOLIBRE_ML_SAMGEO_CMD=shlex.join([sys.executable, str(GATED)]),
        **{GATE_ENV: str(gate)},
    )
    with run_server(
        ["serve"], log_path=tmp_path / "sidecar.log", env=env, health_timeout=30
    ) as server:
        failed = httpx.post(f"{server.url}/ml/start", timeout=60).json()
        assert failed["available"] is False and REFUSAL in failed["message"], failed
        yield server


def test_unreachable_then_start_server(
    page: Page, gated_sidecar: ServerProcess, gate: Path, shot: Shot
) -> None:
    open_app(page, gated_sidecar.url)
    record_statuses(page)
    dialog = open_dialog(page)
    status = status_line(dialog)
    expect(status).to_contain_text(REFUSAL, timeout=WAIT_MS)
    start = dialog.get_by_role("button", name="Start server", exact=True)
    expect(start).to_be_visible()
    expect(dialog.get_by_role("button", name="Segment", exact=True)).to_be_disabled()
    shot("unavailable")

    gate.touch()  # the user fixes what the message said
    with page.expect_request(
        lambda r: r.method == "POST" and r.url.endswith("/ml/start"), timeout=WAIT_MS
    ):
        start.click()
    expect(status).to_have_text(READY, timeout=WAIT_MS)
    shot("started")
    expect(start).to_be_hidden()
    said = statuses(page)
    checking = {"text": "Checking the segmentation backend…", "busy": True}
    starting = [i for i, s in enumerate(said) if s["text"] == "Starting the model server…"]
    assert said[0] == checking, said  # the spinner while the dialog checks
    assert starting, f"no 'Starting the model server…' while it started: {said}"
    assert any(REFUSAL in s["text"] for s in said[: starting[0]]), said
    expect(dialog.get_by_role("button", name="Segment", exact=True)).to_be_enabled()
    model = dialog.get_by_label("Model", exact=True)
    expect(model).to_have_value("classic")
    expect(model.locator("option", has_text="classic (ready)")).to_have_count(1)
    assert httpx.get(f"{gated_sidecar.url}/ml/status", timeout=10).json()["available"] is True
