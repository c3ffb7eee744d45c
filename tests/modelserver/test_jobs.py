"""Jobs: ``/jobs/segment/*`` (202), status, server-sent events, results in several
formats, cancel, the queue and expiry, on a real model server with the classic model.

Every test deletes its jobs: the ``client`` fixture then checks that the server's TMPDIR
holds nothing, i.e. that a deleted job leaves no file.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import CRS
from rasterio.errors import NotGeoreferencedWarning

from support.jobs import all_events, status, submit, wait_for
from support.range_server import serve_folder
from support.rasters import write_rgb_scene
from support.servers import ServerProcess, run_server, stop

from .helpers import LAKE_BOX, Images, checked_client, detail, leftovers, segment

#: Side of the raster whose classic automatic run takes a few seconds (many tiles once
#: the tiling engine cuts it).
LONG_SIZE = 2048
#: Asked of long runs: tiles of this size once the engine tiles (accepted before).
SMALL_TILES = {"tile_size": "256", "tile_overlap": "32"}


def read_vector(path: Path) -> tuple[np.ndarray, list[int], CRS]:
    """Geometries, ``value`` column and CRS of a vector file: GeoPackage and FlatGeobuf
    read by GDAL (pyogrio); GeoParquet by pyarrow, since the GDAL build of the test
    environment has no Parquet driver (the CLI tests read it the same way)."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        geo = json.loads(table.schema.metadata[b"geo"])
        crs = CRS.from_json_dict(geo["columns"]["geometry"]["crs"])
        return (
            shapely.from_wkb(table.column("geometry").to_pylist()),
            table.column("value").to_pylist(),
            crs,
        )
    meta, _fids, geometry, fields = pyogrio.raw.read(path)
    values = fields[list(meta["fields"]).index("value")].tolist()
    return shapely.from_wkb(geometry), values, CRS.from_user_input(meta["crs"])


@pytest.fixture(scope="module")
def long_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RGB GeoTIFF whose classic automatic run lasts a few seconds."""
    return write_rgb_scene(tmp_path_factory.mktemp("jobs-long") / "long.tif", LONG_SIZE)


def test_job_answers_202_and_its_result_is_the_sync_answer(
    client: httpx.Client, images: Images
) -> None:
    for fmt in ("geojson", "geotiff"):
        data = {"prompt": "water", "output_format": fmt}
        created = submit(client, "text", images.multispectral, data)
        assert set(created) == {"job_id", "status_url", "events_url", "result_url"}
        job_id = created["job_id"]
        assert created["status_url"] == f"/jobs/{job_id}"
        assert created["events_url"] == f"/jobs/{job_id}/events"
        assert created["result_url"] == f"/jobs/{job_id}/result"
        first = client.get(created["status_url"]).json()
        assert first["status"] in ("queued", "running", "done")
        assert set(first["progress"]) == {"done", "total"}

        done = wait_for(client, job_id, ("done",))
        assert done["progress"]["done"] == done["progress"]["total"] > 0
        assert "detail" not in done
        got = client.get(created["result_url"])
        sync = segment(client, "text", images.multispectral, data)
        assert got.status_code == sync.status_code == 200
        assert got.content == sync.content, fmt
        for header in ("content-type", "content-disposition", "content-length"):
            assert got.headers.get(header) == sync.headers.get(header), header
        # Asked again in its own format: the same bytes, not run again.
        assert client.get(created["result_url"], params={"output_format": fmt}).content == (
            sync.content
        )
        assert client.delete(created["status_url"]).status_code == 200
        assert client.get(created["status_url"]).status_code == 404


def test_result_in_other_formats_without_running_again(
    server: ServerProcess, client: httpx.Client, images: Images, tmp_path: Path
) -> None:
    created = submit(client, "text", images.rgb_tif, {"prompt": "water"})
    wait_for(client, created["job_id"], ("done",))
    runs = server.log().count("object(s) as")
    features = client.get(created["result_url"]).json()["features"]
    count = len(features)
    assert count >= 1

    for fmt, suffix in (("gpkg", ".gpkg"), ("parquet", ".parquet"), ("fgb", ".fgb")):
        response = client.get(created["result_url"], params={"output_format": fmt})
        assert response.status_code == 200, response.text
        assert response.headers["content-disposition"] == (
            f'attachment; filename="segments{suffix}"'
        )
        path = tmp_path / f"answer{suffix}"
        path.write_bytes(response.content)
        geometry, values, crs = read_vector(path)
        assert len(geometry) == count, fmt
        assert crs.to_epsg() == 32633, fmt
        assert shapely.is_valid(geometry).all(), fmt
        assert sorted(values) == sorted(f["properties"]["value"] for f in features), fmt
        # The rendered file is cached in the job's folder: the same bytes again.
        again = client.get(created["result_url"], params={"output_format": fmt})
        assert again.content == response.content

    tif = client.get(created["result_url"], params={"output_format": "GeoTIFF"})
    assert tif.status_code == 200
    assert tif.headers["content-type"] == "image/tiff"
    with rasterio.MemoryFile(tif.content) as memfile, memfile.open() as src:
        assert (src.width, src.height) == (160, 120)
        assert src.crs.to_epsg() == 32633
        assert int(src.read(1).max()) >= 1

    png = client.get(created["result_url"], params={"output_format": "png"})
    sync_png = segment(client, "text", images.rgb_tif, {"prompt": "water", "output_format": "png"})
    assert png.content == sync_png.content
    assert png.headers["content-disposition"] == sync_png.headers["content-disposition"]
    # Every format above came from the one run of the job (the sync png is one more).
    assert server.log().count("object(s) as") == runs + 1

    bad = client.get(created["result_url"], params={"output_format": "shp"})
    assert bad.status_code == 400
    assert "gpkg" in detail(bad) and "parquet" in detail(bad)
    assert client.delete(created["status_url"]).json()["status"] == "done"


def test_progress_events_increase_and_end_with_done(client: httpx.Client, long_tif: Path) -> None:
    created = submit(client, "automatic", long_tif, SMALL_TILES)
    events = all_events(client, created["events_url"])
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"progress"}, names
    assert events[-1][1]["status"] == "done"
    steps = [data["progress"]["done"] for _, data in events]
    assert steps == sorted(steps), steps
    # At least one step reported while the run went on, then the whole run done.
    assert any(data["progress"]["done"] > 0 and data["status"] == "running" for _, data in events)
    final = events[-1][1]["progress"]
    assert final["done"] == final["total"] > 1
    # A late client gets the end at once.
    assert all_events(client, created["events_url"]) == [events[-1]]
    assert client.get(created["result_url"]).status_code == 200
    assert client.delete(created["status_url"]).status_code == 200


def test_cancel_stops_a_running_job_and_leaves_no_file(
    server: ServerProcess, client: httpx.Client, long_tif: Path, server_tmpdir: Path
) -> None:
    created = submit(client, "automatic", long_tif, SMALL_TILES)
    job_id = created["job_id"]
    running = wait_for(client, job_id, ("running",))
    assert any("job-" in item for item in leftovers(server_tmpdir))  # the job's folder

    answer = client.delete(created["status_url"])
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled"
    # Stopped, not finished: the run never got to its last step, and within one tile of
    # where it was when it was asked to stop.
    after = status(client, job_id)
    assert after["status"] == "cancelled"
    total = after["progress"]["total"]
    assert total == 0 or after["progress"]["done"] < total
    assert after["progress"]["done"] <= running["progress"]["done"] + 1 or total == 0
    assert leftovers(server_tmpdir) == []  # files removed when DELETE answers
    assert f"Job {job_id} cancelled" in server.log()
    late = client.get(created["result_url"])
    assert late.status_code == 409 and "cancelled" in detail(late)
    assert all_events(client, created["events_url"])[-1][0] == "cancelled"
    # Deleting the cancelled job removes it.
    assert client.delete(created["status_url"]).status_code == 200
    assert client.get(created["status_url"]).status_code == 404


def test_one_worker_queues_the_second_job(
    client: httpx.Client, long_tif: Path, images: Images
) -> None:
    first = submit(client, "automatic", long_tif, SMALL_TILES)
    wait_for(client, first["job_id"], ("running",))
    second = submit(client, "text", images.multispectral, {"prompt": "water"})
    assert status(client, second["job_id"])["status"] == "queued"
    assert status(client, first["job_id"])["status"] == "running"
    busy = client.get(first["result_url"])
    assert busy.status_code == 409
    assert "running" in detail(busy) and "/events" in detail(busy)
    assert client.get(second["result_url"]).status_code == 409

    assert client.delete(first["status_url"]).json()["status"] == "cancelled"
    wait_for(client, second["job_id"], ("done",))
    assert client.get(second["result_url"]).status_code == 200
    for created in (first, second):
        assert client.delete(created["status_url"]).status_code == 200


def test_unknown_job_is_a_404_with_a_detail(client: httpx.Client) -> None:
    job_id = secrets.token_hex(16)
    for method, path in (
        ("GET", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/events"),
        ("GET", f"/jobs/{job_id}/result"),
        ("DELETE", f"/jobs/{job_id}"),
    ):
        response = client.request(method, path)
        assert response.status_code == 404, (method, path)
        assert job_id in detail(response) and "GEOLIBRE_ML_JOB_TTL_S" in detail(response)


@pytest.mark.parametrize(
    ("mode", "data", "status_code"),
    [
        ("text", {"prompt": "water", "output_format": "shp"}, 400),
        ("text", {"output_format": "geojson"}, 422),
        ("text", {"prompt": "water", "model_version": "nope"}, 400),
        ("text", {"prompt": "water", "model_version": "sam3"}, 503),
        ("predict", {"boxes": "[[1, 2"}, 400),
        ("automatic", {"min_size": "abc"}, 422),
    ],
)
def test_bad_input_gets_the_sync_answer_and_makes_no_job(
    client: httpx.Client, images: Images, mode: str, data: dict[str, str], status_code: int
) -> None:
    sync = segment(client, mode, images.multispectral, data)
    job = client.post(
        f"/jobs/segment/{mode}",
        files={"file": (images.multispectral.name, images.multispectral.read_bytes())},
        data=data,
    )
    assert sync.status_code == job.status_code == status_code
    assert detail(job) == detail(sync)
    # No job folder either: the client fixture checks the server's TMPDIR is empty.


def test_job_without_file_or_source_is_a_422(client: httpx.Client) -> None:
    response = client.post("/jobs/segment/automatic", data={"min_size": "1"})
    assert response.status_code == 422
    assert "file is required" in detail(response)


def test_failed_job_answers_the_sync_failure(client: httpx.Client, images: Images) -> None:
    cases = [
        ("predict", {"boxes": json.dumps([[1000, 1000, 1001, 1001]])}),  # outside: 400
        ("text", {"prompt": "water", "min_size": "100000"}),  # nothing that big: 404
    ]
    for mode, data in cases:
        created = submit(client, mode, images.rgb_tif, data)
        failed = wait_for(client, created["job_id"], ("failed",))
        sync = segment(client, mode, images.rgb_tif, data)
        assert sync.status_code in (400, 404)
        assert failed["detail"] == detail(sync)
        got = client.get(created["result_url"])
        assert (got.status_code, detail(got)) == (sync.status_code, detail(sync))
        events = all_events(client, created["events_url"])
        assert events == [("failed", failed)]
        assert client.delete(created["status_url"]).json()["status"] == "failed"


def test_job_result_of_predict_with_box_is_the_sync_answer(
    client: httpx.Client, images: Images
) -> None:
    data = {"boxes": json.dumps([LAKE_BOX]), "output_format": "detections"}
    created = submit(client, "predict", images.png, data)
    wait_for(client, created["job_id"], ("done",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        got = client.get(created["result_url"])
    assert got.content == segment(client, "predict", images.png, data).content
    assert client.delete(created["status_url"]).status_code == 200


def test_job_from_a_source_url_answers_like_the_sync_call(
    client: httpx.Client, images: Images, tmp_path: Path
) -> None:
    (tmp_path / "rgb.tif").write_bytes(images.rgb_tif.read_bytes())
    form = {"source": "", "prompt": "water", "model_version": "classic"}
    with serve_folder(tmp_path) as files:
        form["source"] = f"{files.url}/rgb.tif"
        sync = client.post("/segment/text", data=form, files={"unused": ("", b"")})
        files.served.reset()
        created = client.post("/jobs/segment/text", data=form, files={"unused": ("", b"")})
        assert created.status_code == 202, created.text
        job = created.json()
        wait_for(client, job["job_id"], ("done",))
        # Read where it is, by range requests: nothing was uploaded or copied.
        assert files.served.requests
        assert all("bytes=" in r for r in files.served.requests if r.startswith("GET"))
    assert client.get(job["result_url"]).content == sync.content
    assert client.delete(job["status_url"]).status_code == 200


def test_job_source_outside_the_roots_is_refused_up_front(
    client: httpx.Client, images: Images
) -> None:
    form = {"source": str(images.rgb_tif), "prompt": "water"}
    sync = client.post("/segment/text", data=form, files={"unused": ("", b"")})
    job = client.post("/jobs/segment/text", data=form, files={"unused": ("", b"")})
    assert sync.status_code == job.status_code == 403
    assert detail(job) == detail(sync)


# -- expiry and shutdown, on servers of their own ------------------------------------


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., tuple[ServerProcess, Path]]]:
    """``start_server(**env)``: a model server of the test's own with extra environment
    variables; (server, its TMPDIR). Stopped when the test ends, its log then checked."""
    with contextlib.ExitStack() as stack:
        started: list[ServerProcess] = []

        def start(**env: str) -> tuple[ServerProcess, Path]:
            tmpdir = tmp_path / f"tmp-{len(started)}"
            tmpdir.mkdir()
            log = tmp_path / f"server-{len(started)}.log"
            run = run_server(["model-server"], log_path=log, env={"TMPDIR": str(tmpdir), **env})
            started.append(stack.enter_context(run))
            return started[-1], tmpdir

        yield start
        logs = [server.log() for server in started]
    for log in logs:
        assert "Traceback" not in log, log


def test_finished_job_expires_with_its_files(
    start_server: Callable[..., tuple[ServerProcess, Path]], images: Images
) -> None:
    server, tmpdir = start_server(GEOLIBRE_ML_JOB_TTL_S="0.5")
    with checked_client(server.url, tmpdir) as client:
        created = submit(client, "text", images.multispectral, {"prompt": "water"})
        with client.stream("GET", created["events_url"]) as response:
            assert list(response.iter_lines())  # until the end event: the job is done
        # Removed by the sweeper, with no request asking for it.
        assert leftovers(tmpdir, timeout=10) == []
        assert f"Job {created['job_id']} expired" in server.log()
        gone = client.get(created["status_url"])
        assert gone.status_code == 404 and "expired" in detail(gone)


def test_shutdown_cancels_running_jobs_and_removes_their_folders(
    start_server: Callable[..., tuple[ServerProcess, Path]], long_tif: Path
) -> None:
    # Two workers: both jobs run at once, a third waits.
    server, tmpdir = start_server(GEOLIBRE_ML_JOB_WORKERS="2")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        jobs = [submit(client, "automatic", long_tif, SMALL_TILES) for _ in range(3)]
        for job in jobs[:2]:
            wait_for(client, job["job_id"], ("running",))
        assert status(client, jobs[2]["job_id"])["status"] == "queued"
        assert len([item for item in leftovers(tmpdir) if "job-" in item]) == 3
    stop(server.process)  # SIGTERM: uvicorn's graceful shutdown, the app's lifespan end
    assert leftovers(tmpdir) == []
    assert not (tmpdir / "geolibre-ml-uploads" / str(server.process.pid)).exists()
    assert "3 job(s) cancelled" in server.log()


def test_jobs_share_the_memory_budget(
    start_server: Callable[..., tuple[ServerProcess, Path]], long_tif: Path, images: Images
) -> None:
    # 40 MiB: the long raster in one piece (about 190 MiB expected) is over 4 budgets;
    # the scene fits.
    server, tmpdir = start_server(GEOLIBRE_ML_MEMORY_BUDGET_MB="40")
    whole = {"tile_size": str(LONG_SIZE)}
    with checked_client(server.url, tmpdir) as client:
        sync = segment(client, "automatic", long_tif, whole)
        job = client.post(
            "/jobs/segment/automatic",
            files={"file": (long_tif.name, long_tif.read_bytes())},
            data=whole,
        )
        assert sync.status_code == job.status_code == 413
        assert detail(job) == detail(sync)
        created = submit(client, "text", images.multispectral, {"prompt": "water"})
        wait_for(client, created["job_id"], ("done",))
        assert "holds" in server.log() and "of the memory budget" in server.log()
        assert client.delete(created["status_url"]).status_code == 200


def test_job_urls_follow_a_forwarded_prefix_and_ignore_anything_else(
    client: httpx.Client, images: Images
) -> None:
    for header, prefix in (("/gis/ml", "/gis/ml"), ("/ml/", "/ml"), ("//evil.example", "")):
        created = client.post(
            "/jobs/segment/text",
            files={"file": ("ms.tif", images.multispectral.read_bytes())},
            data={"prompt": "water"},
            headers={"X-Forwarded-Prefix": header},
        ).json()
        assert created["status_url"] == f"{prefix}/jobs/{created['job_id']}", header
        wait_for(client, created["job_id"], ("done",))
        assert client.delete(f"/jobs/{created['job_id']}").status_code == 200
