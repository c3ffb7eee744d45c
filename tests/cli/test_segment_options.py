"""``geolibre-ml segment`` in-process: option checks, output naming, folders, Ctrl-C.

These call :func:`geolibre_ml.cli.main` directly (the same code the command runs)
so that the many usage cases stay fast; test_segment_command.py runs the real
process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyogrio
import pytest
from cli_rasters import write_png, write_scene
from pyproj import CRS

from geolibre_ml import batch, cli
from geolibre_ml.segment import writers


def segment(*args: str | Path) -> int:
    return cli.main(["segment", *map(str, args)])


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# -- usage errors: exit 2, a message, nothing written ----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--boxes", "[[1, 2"], "boxes is not valid JSON"),
        (["--points", "[[1]]"], "--points must be a JSON list of 2-number lists"),
        (["--points", "[[5, 5]]", "--labels", "[1, 0]"], "--labels has 2 value(s)"),
        (["--boxes", "[[50, 50, 10, 10]]"], "is empty or inverted"),
        (["--mode", "predict"], "predict needs a prompt: give --boxes"),
        (["--mode", "text"], "--mode text needs --prompt"),
        (["--mode", "automatic", "--prompt", "water"], "--prompt only applies to --mode text"),
        (["--prompt", "water", "--boxes", "[[1, 1, 9, 9]]"], "choose --mode text or --mode"),
        (["--prompt", "water", "--point-crs", "EPSG:4326"], "only apply to --mode predict"),
        (["--boxes", "[[1, 1, 9, 9]]", "--labels", "[1]"], "--labels gives one label per point"),
        (["--boxes", "[[1, 1, 9, 9]]", "--point-crs", "EPSG:0"], "--point-crs 'EPSG:0' is not"),
        (["--output-crs", "not a crs"], "--output-crs 'not a crs' is not a coordinate"),
        (["--prompt", "cars"], "classic model does not know 'cars'"),
        (["--model", "nonesuch"], "Unknown --model 'nonesuch'. Known versions: sam3, classic"),
        (["--model", "classic", "--model-id", "big"], "Unknown --model-id 'big' for classic"),
    ],
)
def test_bad_options_exit_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    write_scene(tmp_path / "scene.tif")
    assert segment("scene.tif", *args, "-o", "out.gpkg") == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("geolibre-ml segment: error: ")
    assert not (tmp_path / "out.gpkg").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--confidence", "x"], "--confidence: 'x' is not a number"),
        (["--min-size", "-3"], "--min-size: -3 is negative"),
        (["--simplify", "nan"], "--simplify: nan is not a finite number"),
        (["--bands", "4,3"], "--bands: --bands '4,3' lists 2 band(s): give 3 band numbers"),
        (["--bands", "4 3 2 1"], "--bands '4 3 2 1' lists 4 band(s)"),
        (["--format", "kml"], "argument --format: invalid choice: 'kml'"),
        (["--mode", "everything"], "argument --mode: invalid choice"),
    ],
)
def test_argument_errors_exit_2_with_the_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        segment("scene.tif", *argv, "-o", "out.gpkg")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: geolibre-ml segment" in err and message in err


def test_an_unknown_output_extension_lists_the_formats(tmp_path: Path, capsys) -> None:
    write_scene(tmp_path / "scene.tif")
    assert segment("scene.tif", "-o", "out.kml") == 2
    err = capsys.readouterr().err
    assert "Use one of these extensions: .geojson, .json, .gpkg, .fgb, .parquet" in err
    assert "end OUTPUT with '/'" in err


def test_several_inputs_need_a_folder_not_a_file_name(tmp_path: Path, capsys) -> None:
    write_scene(tmp_path / "a.tif")
    write_scene(tmp_path / "b.tif")
    assert segment("a.tif", "b.tif", "-o", "out.gpkg") == 2
    err = capsys.readouterr().err
    assert "looks like a GeoPackage file" in err and "-o out/ --format gpkg" in err
    assert not (tmp_path / "out.gpkg").exists()


def test_bands_that_do_not_exist_are_an_input_error(tmp_path: Path, capsys) -> None:
    write_scene(tmp_path / "scene.tif")
    assert segment("scene.tif", "--bands", "9,3,2", "-o", "out.gpkg") == 2
    assert "bands [9] do not exist: this raster has 4 band(s)" in capsys.readouterr().err


def test_output_crs_on_a_png_is_an_input_error(tmp_path: Path, capsys) -> None:
    write_png(tmp_path / "scene.png")
    assert (
        segment("scene.png", "--prompt", "water", "--output-crs", "EPSG:4326", "-o", "o.gpkg") == 2
    )
    err = capsys.readouterr().err
    assert "--output-crs needs a georeferenced raster" in err
    assert not (tmp_path / "o.gpkg").exists()


def test_a_box_outside_the_image_is_an_input_error(tmp_path: Path, capsys) -> None:
    write_scene(tmp_path / "scene.tif")
    box = json.dumps([[10.0, 50.0, 10.1, 50.1]])  # central Europe, far from the raster
    assert segment("scene.tif", "--boxes", box, "--point-crs", "EPSG:4326", "-o", "o.gpkg") == 2
    assert "lies outside the image" in capsys.readouterr().err


def test_a_file_that_cannot_be_written_exits_1(tmp_path: Path, capsys) -> None:
    write_scene(tmp_path / "scene.tif")
    (tmp_path / "taken").write_text("a file, not a folder")
    assert segment("scene.tif", "--prompt", "water", "-o", "taken/out.gpkg") == 1
    assert "cannot write" in capsys.readouterr().err


# -- what runs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "mode"),
    [
        ([], "automatic"),
        (["--prompt", "water"], "text"),
        (["--boxes", "[[1, 1, 9, 9]]"], "predict"),
        (["--points", "[[5, 5]]", "--labels", "[1]"], "predict"),
        (["--mode", "automatic"], "automatic"),
        (["--mode", "predict", "--points", "[[5, 5]]"], "predict"),
    ],
)
def test_the_mode_follows_from_the_options(options: list[str], mode: str) -> None:
    args = cli.build_parser().parse_args(["segment", "in.tif", "-o", "o.gpkg", *options])
    assert batch.resolve_mode(args) == mode
    assert batch.build_prompt(args).mode == mode


def test_automatic_mode_with_a_size_filter(tmp_path: Path) -> None:
    write_scene(tmp_path / "scene.tif")
    assert segment("scene.tif", "--max-size", "3000", "-o", "auto.gpkg") == 0
    _meta, _fids, _geom, fields = pyogrio.raw.read(tmp_path / "auto.gpkg", columns=["mode"])
    assert len(fields[0]) > 0 and set(fields[0]) == {"automatic"}
    # No object above 3000 pixels of 100 m2 each (the lake and the forest are larger).
    _meta, _fids, _geom, fields = pyogrio.raw.read(tmp_path / "auto.gpkg", columns=["area_m2"])
    assert fields[0].max() <= 3000 * 100 * 1.001


def test_simplify_tolerance_is_applied(tmp_path: Path) -> None:
    import shapely

    write_scene(tmp_path / "scene.tif")
    assert segment("scene.tif", "--prompt", "water", "-o", "full.gpkg", "-q") == 0
    assert segment("scene.tif", "--prompt", "water", "-o", "s.gpkg", "-q", "--simplify", "15") == 0
    full = shapely.from_wkb(pyogrio.raw.read(tmp_path / "full.gpkg")[2])
    simple = shapely.from_wkb(pyogrio.raw.read(tmp_path / "s.gpkg")[2])
    assert shapely.get_num_coordinates(simple).sum() < shapely.get_num_coordinates(full).sum()


def test_bands_choose_what_the_model_sees(tmp_path: Path, capsys) -> None:
    write_scene(tmp_path / "scene.tif")
    assert segment("scene.tif", "--bands", "4,3,2", "--max-size", "400", "-o", "cir.fgb") == 0
    assert "scene.tif:" in capsys.readouterr().out


def test_a_folder_input_takes_its_images_sorted_and_with_r_its_subfolders(tmp_path, capsys):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    write_scene(images / "b.tif")
    write_scene(images / "A.TIF", seed=3)
    write_scene(images / "sub" / "c.tiff", seed=4)
    write_scene(images / ".hidden.tif")
    (images / "notes.txt").write_text("not an image")

    assert segment("images", "--prompt", "water", "-o", "flat") == 0
    assert files_under(tmp_path / "flat") == ["A.geojson", "b.geojson"]
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["images/A.TIF", "images/b.tif"]

    assert segment("images", "-r", "--prompt", "water", "-o", "deep", "--format", "fgb") == 0
    assert files_under(tmp_path / "deep") == ["A.fgb", "b.fgb", "sub/c.fgb"]
    info = pyogrio.read_info(tmp_path / "deep" / "sub" / "c.fgb")
    assert CRS.from_user_input(info["crs"]) == CRS.from_epsg(32633)


def test_an_empty_folder_is_an_input_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert segment("empty", "-o", "out") == 2
    assert "empty: no .tif, .tiff, .png, .jpg, .jpeg files in it (-r searches subfolders)" in (
        capsys.readouterr().err
    )


def test_inputs_sharing_a_name_keep_their_extension(tmp_path: Path, capsys) -> None:
    write_scene(tmp_path / "scene.tif")
    write_png(tmp_path / "scene.png")
    assert segment("scene.tif", "scene.png", "--prompt", "water", "-o", "out/") == 0
    assert files_under(tmp_path / "out") == ["scene.png.geojson", "scene.tif.geojson"]
    png = json.loads((tmp_path / "out" / "scene.png.geojson").read_text())
    assert "crs" not in png  # pixel space
    tif = json.loads((tmp_path / "out" / "scene.tif.geojson").read_text())
    assert tif["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"


def test_the_same_name_from_two_folders_is_refused(tmp_path: Path, capsys) -> None:
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        write_scene(tmp_path / folder / "scene.tif")
    assert segment("x/scene.tif", "y/scene.tif", "-o", "out") == 2
    assert "would write the same output file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_same_input_twice_runs_once(tmp_path: Path, capsys) -> None:
    write_scene(tmp_path / "scene.tif")
    assert segment("scene.tif", "./scene.tif", "--prompt", "water", "-o", "out") == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_an_existing_folder_output_takes_one_input(tmp_path: Path) -> None:
    write_scene(tmp_path / "scene.tif")
    (tmp_path / "results").mkdir()
    assert segment("scene.tif", "--prompt", "water", "-o", "results", "--format", "shp") == 0
    assert files_under(tmp_path / "results") == [
        "scene.cpg",
        "scene.dbf",
        "scene.prj",
        "scene.shp",
        "scene.shx",
    ]


def test_quiet_prints_nothing_on_success(tmp_path: Path, capsys) -> None:
    write_scene(tmp_path / "a.tif")
    write_scene(tmp_path / "b.tif")
    assert segment("a.tif", "b.tif", "--prompt", "water", "-o", "out", "-q") == 0
    assert capsys.readouterr() == ("", "")


def test_ctrl_c_stops_keeps_finished_files_and_removes_the_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    for name in ("a", "b", "c"):
        write_scene(tmp_path / f"{name}.tif")
    real_write = writers.write_features
    calls = []

    def write_then_interrupt(features, path, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            # Interrupted in the middle of the second file: its data is staged, not placed.
            def interrupted(*_a, **_k):
                raise KeyboardInterrupt

            monkeypatch.setattr(writers, "_geojson", interrupted)
        return real_write(features, path, **kwargs)

    monkeypatch.setattr(batch, "write_features", write_then_interrupt)
    assert segment("a.tif", "b.tif", "c.tif", "--prompt", "water", "-o", "out") == 130
    assert "interrupted" in capsys.readouterr().err
    # a is complete, b was removed (no partial file or staging folder), c never started.
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.geojson"]
    assert json.loads((tmp_path / "out" / "a.geojson").read_text())["features"]


def test_help_documents_naming_and_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["segment", "--help"])
    text = capsys.readouterr().out
    for phrase in ("OUTPUT/INPUT.<ext>", "exit status:", "130", "--point-crs", "-r"):
        assert phrase in text


def test_format_names_match_the_writers() -> None:
    assert cli.FORMAT_NAMES == writers.FORMAT_NAMES
