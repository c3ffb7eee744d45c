"""``geolibre-ml segment FOLDER --scheduler ...``: a batch on a Dask cluster gives the
files, lines and exit status of the same batch run here."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.rasters import write_blobs

pytest.importorskip("distributed")


def _outputs(folder: Path) -> dict[str, Any]:
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.geojson"))}


def test_a_batch_folder_on_the_cluster_matches_the_local_batch(
    tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]], dask_cluster: Any
) -> None:
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_blobs(scenes / "large.tif", size=700, seed=1, count=20)  # 3 x 3 tiles of 256 px
    for k in range(3):  # one tile each: spread as files
        write_blobs(scenes / f"small{k}.tif", size=200, seed=10 + k, count=4)
    (scenes / "broken.tif").write_bytes(b"not a tiff")  # exit 2 either way, the rest runs
    args = ("scenes", "--tile-size", "256", "--tile-overlap", "32", "--prompt", "water")

    local = cli(*args, "-o", "local/")
    remote = cli(*args, "-o", "remote/", "--scheduler", dask_cluster.scheduler_address)

    assert local.returncode == remote.returncode == 2, (local.stderr, remote.stderr)
    assert "on the Dask cluster at" in remote.stderr
    assert remote.stdout.replace("remote/", "local/") == local.stdout
    assert local.stdout.count("->") == 4
    want = _outputs(tmp_path / "local")
    assert len(want) == 4
    assert _outputs(tmp_path / "remote") == want


def test_an_unreachable_scheduler_is_exit_1_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from geolibre_ml import cli
    from geolibre_ml.segment import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 0.5)
    source = write_blobs(tmp_path / "one.tif", size=100, count=2)
    target = tmp_path / "one.geojson"
    status = cli.main(
        ["segment", str(source), "-o", str(target), "--scheduler", "tcp://127.0.0.1:9"]
    )
    assert status == 1
    assert "No Dask scheduler answers at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not target.exists()
