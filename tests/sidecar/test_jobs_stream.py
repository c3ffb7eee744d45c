"""A job's server-sent events through the sidecar (``/ml/jobs/...``), as they happen."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from support.jobs import sse_events
from support.rasters import write_rgb_scene
from support.servers import ServerProcess


@pytest.fixture(scope="module")
def long_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RGB GeoTIFF whose classic automatic run lasts a few seconds."""
    return write_rgb_scene(tmp_path_factory.mktemp("sidecar-jobs") / "long.tif", 2048)


def test_job_events_stream_through_the_sidecar_unbuffered(
    proxied: ServerProcess, model_server: ServerProcess, long_tif: Path
) -> None:
    with (
        httpx.Client(base_url=proxied.url, timeout=60) as via,
        httpx.Client(base_url=model_server.url, timeout=60) as direct,
    ):
        created = via.post(
            "/ml/jobs/segment/automatic",
            files={"file": (long_tif.name, long_tif.read_bytes())},
            data={"model_version": "classic", "tile_size": "256", "tile_overlap": "32"},
        )
        assert created.status_code == 202, created.text
        job = created.json()
        # The URLs given back are the sidecar's, where the client is.
        assert job["status_url"] == f"/ml/jobs/{job['job_id']}"
        inside = job["status_url"].removeprefix("/ml")
        with via.stream("GET", job["events_url"]) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response.iter_lines())
            name, first = next(events)
            # The first event came through while the job still ran: a proxy that buffered
            # the stream would have held it until the end event.
            assert name == "progress"
            assert direct.get(inside).json()["status"] in ("queued", "running")
            rest = list(events)
        assert rest[-1][0] == "done"
        steps = [first["progress"]["done"], *(data["progress"]["done"] for _, data in rest)]
        assert steps == sorted(steps) and steps[-1] > 0
        # The result and the delete go through the sidecar too.
        assert via.get(job["result_url"]).status_code == 200
        assert via.delete(job["status_url"]).status_code == 200
        assert direct.get(inside).status_code == 404
