"""Jobs on a Dask cluster: with ``GEOLIBRE_ML_DASK_SCHEDULER`` set, a job's tiles run
on the cluster's workers, and its answer is the synchronous (local) one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.jobs import submit, wait_for
from support.rasters import write_blobs
from support.servers import run_server

from .helpers import checked_client, segment

pytest.importorskip("distributed")

from geolibre_ml.segment.cluster import PLUGIN_NAME, worker_counts


def test_a_job_runs_its_tiles_on_the_cluster_and_answers_like_the_sync_call(
    tmp_path: Path, dask_cluster: Any, dask_client: Any
) -> None:
    raster = write_blobs(tmp_path / "blobs.tif", size=700, seed=2, count=20)  # 3 x 3 tiles
    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    env = {"TMPDIR": str(server_tmp), "GEOLIBRE_ML_DASK_SCHEDULER": dask_cluster.scheduler_address}
    data = {"prompt": "water", "tile_size": "256", "tile_overlap": "32"}
    with (
        run_server(["model-server"], log_path=tmp_path / "server.log", env=env) as process,
        checked_client(process.url, server_tmp) as client,
    ):
        before = dask_client.run(worker_counts, name=PLUGIN_NAME)
        created = submit(client, "text", raster, data)
        done = wait_for(client, created["job_id"], ("done",))
        after = dask_client.run(worker_counts, name=PLUGIN_NAME)
        got = client.get(created["result_url"])
        sync = segment(client, "text", raster, data)  # synchronous calls stay local
        assert got.status_code == sync.status_code == 200
        assert got.content == sync.content
        assert got.json()["features"]
        assert done["progress"]["done"] == done["progress"]["total"]
        assert client.delete(created["status_url"]).status_code == 200
        log = process.log()
    assert "Traceback" not in log, log
    ran = sum(after[w]["tiles"] - before.get(w, {"tiles": 0})["tiles"] for w in after)
    assert ran == 9
