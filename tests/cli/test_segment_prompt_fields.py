"""``geolibre-ml segment`` with --prompts, exemplar --boxes/--labels in text mode, and
--box-mode in predict mode (in-process, classic model)."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pytest
from cli_rasters import write_scene

from geolibre_ml import cli


def segment(*args: str | Path) -> int:
    return cli.main(["segment", *map(str, args), "--model", "classic", "-q"])


def read(path: Path) -> tuple[list[bytes], dict[str, list]]:
    """The geometries (WKB) and the columns of a vector file's layer."""
    meta, _fids, geometries, values = pyogrio.raw.read(path)
    return list(geometries), {name: list(v) for name, v in zip(meta["fields"], values, strict=True)}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_scene(tmp_path / "scene.tif")


def test_prompts_add_concepts_each_feature_names_its_own(tmp_path: Path) -> None:
    assert segment("scene.tif", "--prompt", "water", "--prompts", '["trees"]', "-o", "c.gpkg") == 0
    _, table = read(tmp_path / "c.gpkg")
    assert set(table["prompt"]) == {"water", "trees"}
    assert pyogrio.read_info(tmp_path / "c.gpkg")["layer_name"] == "water+trees"
    assert segment("scene.tif", "--prompt", "water", "-o", "w.gpkg") == 0
    water, _ = read(tmp_path / "w.gpkg")
    assert table["prompt"].count("water") == len(water)
    # --prompts alone is a text prompt too.
    assert segment("scene.tif", "--prompts", '["trees", "trees"]', "-o", "t.geojson") == 0
    assert set(read(tmp_path / "t.geojson")[1]["prompt"]) == {"trees"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompts", '["trees",'], "--prompts is not valid JSON"),
        (["--prompts", '["trees", ""]'], "--prompts holds an empty or blank concept"),
        (["--mode", "predict", "--prompts", '["x"]'], "--prompts only applies to --mode text"),
        (
            ["--prompt", "water", "--mode", "text", "--boxes", "[[1, 1, 9, 9]]"],
            "the classic backend does not take exemplar --boxes; use --model=sam3 or drop --boxes",
        ),
        (
            [
                "--mode",
                "text",
                "--prompt",
                "water",
                "--boxes",
                "[[1, 1, 9, 9]]",
                "--labels",
                "[1, 0]",
            ],
            "--labels has 2 value(s) but --boxes has 1 box(es); give one label per box",
        ),
        (["--prompt", "water", "--labels", "[1]"], "add --boxes or leave them out"),
        (["--prompt", "water", "--points", "[[3, 3]]", "--mode", "text"], "--points only apply"),
        (["--boxes", "[[1, 1, 9, 9]]", "--box-mode", "all"], "Unknown --box-mode 'all'"),
        (
            ["--boxes", "[[1, 1, 9, 9]]", "--box-mode", "similar"],
            "use --box-mode=object or --model=sam3",
        ),
        (
            ["--prompt", "water", "--box-mode", "object"],
            "--box-mode only applies to --mode predict",
        ),
    ],
)
def test_bad_new_options_exit_2_with_the_flags_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert segment("scene.tif", *args, "-o", "out.gpkg") == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "out.gpkg").exists()


def test_box_mode_object_is_classics_own_answer(tmp_path: Path) -> None:
    box = "[[10, 10, 60, 50]]"
    assert segment("scene.tif", "--boxes", box, "-o", "a.geojson") == 0
    assert segment("scene.tif", "--boxes", box, "--box-mode", "object", "-o", "b.geojson") == 0
    a, _ = read(tmp_path / "a.geojson")
    b, _ = read(tmp_path / "b.geojson")
    assert len(a) == len(b) > 0
    assert a == b
