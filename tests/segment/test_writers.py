"""Vector files by extension: every format read back and compared with what was written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from pyogrio import raw
from pyproj import CRS

from geolibre_ml.segment import writers
from geolibre_ml.segment.errors import InvalidRequest
from geolibre_ml.segment.features import FeatureSet
from geolibre_ml.segment.writers import (
    FORMATS,
    field_schema,
    format_for_path,
    geoparquet_metadata,
    write_features,
)

UTM = CRS.from_epsg(32633)
# A transverse Mercator with no EPSG code: it must survive in every format.
CUSTOM = CRS.from_wkt(
    'PROJCRS["Local TM",BASEGEOGCRS["GRS 1980 based",DATUM["unnamed",ELLIPSOID["GRS 1980",'
    '6378137,298.257222101,LENGTHUNIT["metre",1]]],PRIMEM["Greenwich",0,ANGLEUNIT["degree",'
    '0.0174532925199433]]],CONVERSION["unnamed",METHOD["Transverse Mercator",ID["EPSG",9807]],'
    'PARAMETER["Latitude of natural origin",10,ANGLEUNIT["degree",0.0174532925199433]],'
    'PARAMETER["Longitude of natural origin",13.3,ANGLEUNIT["degree",0.0174532925199433]],'
    'PARAMETER["Scale factor at natural origin",0.9996,SCALEUNIT["unity",1]],'
    'PARAMETER["False easting",500,LENGTHUNIT["metre",1]],'
    'PARAMETER["False northing",0,LENGTHUNIT["metre",1]]],CS[Cartesian,2],'
    'AXIS["easting",east,ORDER[1],LENGTHUNIT["metre",1]],'
    'AXIS["northing",north,ORDER[2],LENGTHUNIT["metre",1]]]'
)
SHARED = {"mode": "text", "prompt": "water", "model": "classic", "model_id": "default"}
EXTENSIONS = [".geojson", ".gpkg", ".fgb", ".parquet", ".shp"]


def lake_features(crs: CRS | None = UTM) -> FeatureSet:
    """Three objects: a square with a hole, a two-part object, one without a score."""
    x0, y0 = (500000.0, 3999000.0) if crs is not None else (0.0, 0.0)
    ring = shapely.box(x0, y0, x0 + 100, y0 + 80)
    hole = shapely.box(x0 + 20, y0 + 20, x0 + 40, y0 + 40)
    square = shapely.Polygon(ring.exterior.coords, [hole.exterior.coords])
    multi = shapely.MultiPolygon(
        [shapely.box(x0 + 200, y0, x0 + 210, y0 + 10), shapely.box(x0 + 230, y0, x0 + 250, y0 + 5)]
    )
    small = shapely.box(x0 + 300, y0 + 300, x0 + 301, y0 + 302)
    props = [
        {"value": 1, "score": 0.91, "area_m2": 7600.25, **SHARED, "source": "lake.tif"},
        {"value": 2, "score": 0.5, "area_m2": 200.0, **SHARED, "source": "lake.tif"},
        {"value": 5, "area_m2": 2.0, **SHARED, "source": "lake.tif"},
    ]
    if crs is None:
        for p in props:
            del p["area_m2"]
    return FeatureSet(np.array([square, multi, small], dtype=object), props, crs)


def read_back(path: Path) -> tuple[list, list[dict], CRS | None, list[str]]:
    """Geometries, properties, CRS and field names as a reader sees them, by ``value``."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        geo = json.loads(table.schema.metadata[b"geo"])
        crs_json = geo["columns"]["geometry"]["crs"]
        crs = CRS.from_json_dict(crs_json) if crs_json is not None else None
        geoms = list(shapely.from_wkb(table.column("geometry").to_pylist()))
        names = [n for n in table.column_names if n != "geometry"]
        rows = table.drop(["geometry"]).to_pylist()
        return geoms, rows, crs, names
    meta, _fids, geometry, field_data = raw.read(path)
    geoms = list(shapely.from_wkb(geometry))
    names = list(meta["fields"])
    rows = []
    for i in range(len(geoms)):
        row = {}
        for name, column in zip(names, field_data, strict=True):
            value = column[i]
            if isinstance(value, float) and np.isnan(value):
                value = None
            row[name] = value.item() if hasattr(value, "item") else value
        rows.append(row)
    crs = CRS.from_user_input(meta["crs"]) if meta["crs"] else None
    if path.suffix == ".fgb":
        # FlatGeobuf's spatial index stores features in Hilbert order.
        order = np.argsort([r["value"] for r in rows], kind="stable")
        geoms, rows = [geoms[i] for i in order], [rows[i] for i in order]
    return geoms, rows, crs, names


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_each_format_reads_back_the_same_features(tmp_path: Path, ext: str) -> None:
    features = lake_features()
    path = write_features(features, tmp_path / f"lake{ext}", layer="water", shared=SHARED)
    assert path == tmp_path / f"lake{ext}"
    geoms, rows, crs, names = read_back(path)

    assert crs == UTM
    assert names == ["value", "score", "area_m2", "mode", "prompt", "model", "model_id", "source"]
    assert len(geoms) == 3
    for got, want in zip(geoms, features.geometries, strict=True):
        # Same point set (a Polygon may come back as a one-part MultiPolygon).
        assert shapely.equals(got, want), (got.wkt, want.wkt)
    assert geoms[0].geom_type in {"Polygon", "MultiPolygon"}
    assert len(shapely.get_parts(geoms[1])) == 2
    assert [r["value"] for r in rows] == [1, 2, 5]
    assert [r["score"] for r in rows] == [0.91, 0.5, None]
    assert [r["area_m2"] for r in rows] == [7600.25, 200.0, 2.0]
    assert {r["prompt"] for r in rows} == {"water"}
    assert {r["source"] for r in rows} == {"lake.tif"}
    if ext != ".shp" and ext != ".parquet":
        assert pyogrio.read_info(path)["layer_name"] == "water"


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_an_empty_set_is_a_valid_empty_layer_with_crs_and_schema(tmp_path: Path, ext: str) -> None:
    path = write_features(FeatureSet.empty(UTM), tmp_path / f"none{ext}", shared=SHARED)
    geoms, rows, crs, names = read_back(path)
    assert geoms == [] and rows == []
    assert crs == UTM
    if ext == ".geojson":
        # GeoJSON has no schema without features; the CRS and layer name are still there.
        doc = json.loads(path.read_text())
        assert doc["features"] == [] and doc["name"] == "none"
        assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    else:
        assert names == ["value", "score", "area_m2", "mode", "prompt", "model", "model_id"]
    if ext in {".gpkg", ".fgb", ".shp"}:
        info = pyogrio.read_info(path)
        assert info["geometry_type"] == "Polygon"
        assert list(info["dtypes"][:3]) == ["int64", "float64", "float64"]


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_pixel_space_features_are_written_without_a_crs(tmp_path: Path, ext: str) -> None:
    features = lake_features(crs=None)
    path = write_features(features, tmp_path / f"pixels{ext}")
    geoms, rows, crs, names = read_back(path)
    assert "area_m2" not in names
    assert [r["value"] for r in rows] == [1, 2, 5]
    assert shapely.equals(geoms[0], features.geometries[0])
    if ext == ".geojson":
        # GeoJSON readers assume WGS 84 when there is no crs member; there is none.
        assert "crs" not in json.loads(path.read_text())
    else:
        assert crs is None
    if ext == ".parquet":
        geo = json.loads(pq.read_schema(path).metadata[b"geo"])
        # JSON null is "unknown CRS"; an absent key would claim WGS 84.
        assert "crs" in geo["columns"]["geometry"]
        assert geo["columns"]["geometry"]["crs"] is None


@pytest.mark.parametrize("ext", [".geojson", ".gpkg", ".fgb", ".parquet"])
def test_a_crs_without_epsg_code_survives(tmp_path: Path, ext: str) -> None:
    path = write_features(lake_features(CUSTOM), tmp_path / f"custom{ext}")
    _geoms, _rows, crs, _names = read_back(path)
    assert crs is not None
    assert crs.equals(CUSTOM, ignore_axis_order=True)
    assert crs.to_epsg() is None


def test_geojson_is_rfc7946_in_wgs84(tmp_path: Path) -> None:
    square = shapely.Polygon([(13.0, 52.0), (13.0, 52.1), (13.1, 52.1), (13.1, 52.0)])  # clockwise
    features = FeatureSet(np.array([square], dtype=object), [{"value": 1}], CRS.from_epsg(4326))
    path = write_features(features, tmp_path / "wgs84.geojson")
    doc = json.loads(path.read_text())
    # The same member as the model server's answers (one serializer); GDAL and QGIS
    # read it as longitude/latitude, RFC 7946's order.
    assert doc["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4326"}}
    assert CRS.from_user_input(pyogrio.read_info(path)["crs"]).equals(CRS.from_epsg(4326))
    ring = doc["features"][0]["geometry"]["coordinates"][0]
    assert ring[0][0] == pytest.approx(13.0) and ring[0][1] in (52.0, 52.1)  # x = longitude
    assert shapely.Polygon(ring).exterior.is_ccw  # exteriors counter-clockwise
    assert doc["features"][0]["id"] == 1
    assert doc["features"][0]["properties"] == {"value": 1, "score": None, "area_m2": None}


def test_geojson_keeps_a_projected_crs_as_a_urn(tmp_path: Path) -> None:
    path = write_features(lake_features(), tmp_path / "utm.json")
    doc = json.loads(path.read_text())
    assert doc["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    assert doc["features"][0]["geometry"]["type"] == "Polygon"
    assert len(doc["features"][0]["geometry"]["coordinates"]) == 2  # the hole is kept


def test_geoparquet_metadata_is_valid(tmp_path: Path) -> None:
    features = lake_features()
    path = write_features(features, tmp_path / "lake.parquet")
    schema = pq.read_schema(path)
    geo = json.loads(schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0"
    assert geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB"
    assert column["geometry_types"] == ["MultiPolygon", "Polygon"]
    assert CRS.from_json_dict(column["crs"]) == UTM
    assert column["crs"]["id"] == {"authority": "EPSG", "code": 32633}
    assert column["bbox"] == pytest.approx(list(shapely.total_bounds(features.geometries)))
    assert column["orientation"] == "counterclockwise"
    assert str(schema.field("geometry").type) == "binary"
    assert str(schema.field("value").type) == "int64"
    wkb = pq.read_table(path).column("geometry").to_pylist()
    assert wkb[0][:1] == b"\x01" and int.from_bytes(wkb[0][1:5], "little") == 3  # ISO WKB polygon


def test_geoparquet_metadata_of_an_empty_set_has_no_bbox() -> None:
    meta = geoparquet_metadata(np.empty(0, dtype=object), UTM)
    assert meta["columns"]["geometry"]["geometry_types"] == []
    assert "bbox" not in meta["columns"]["geometry"]


def test_mixed_polygons_are_declared_multipolygon(tmp_path: Path) -> None:
    path = write_features(lake_features(), tmp_path / "mixed.gpkg")
    info = pyogrio.read_info(path)
    assert info["geometry_type"] == "MultiPolygon"
    geoms, *_ = read_back(path)
    assert {g.geom_type for g in geoms} == {"MultiPolygon"}


def test_shapefile_field_names_fit_in_ten_characters(tmp_path: Path) -> None:
    schema = field_schema(lake_features(), SHARED)
    assert all(len(name) <= 10 for name in schema)  # ours fit as they are
    props = [{"value": 1, "classification": "a", "classification_b": "b"}]
    features = FeatureSet(np.array([shapely.box(0, 0, 1, 1)], dtype=object), props, UTM)
    path = write_features(features, tmp_path / "long.shp")
    names = list(pyogrio.read_info(path)["fields"])
    assert names == ["value", "score", "area_m2", "classifica", "classifi_1"]
    assert (tmp_path / "long.cpg").read_text().strip() == "UTF-8"


def test_rewriting_a_shapefile_without_crs_drops_the_old_prj(tmp_path: Path) -> None:
    write_features(lake_features(), tmp_path / "a.shp")
    assert (tmp_path / "a.prj").exists()
    write_features(lake_features(crs=None), tmp_path / "a.shp")
    assert not (tmp_path / "a.prj").exists()
    assert pyogrio.read_info(tmp_path / "a.shp")["crs"] is None


def test_an_existing_file_is_replaced_not_appended(tmp_path: Path) -> None:
    path = tmp_path / "out.gpkg"
    write_features(lake_features(), path, layer="first")
    write_features(FeatureSet.empty(UTM), path, layer="second")
    assert [name for name, _ in pyogrio.list_layers(path)] == ["second"]
    assert pyogrio.read_info(path, layer="second")["features"] == 0


def test_values_of_other_types_become_columns(tmp_path: Path) -> None:
    props = [
        {"value": 1, "flag": True, "tags": ["a", "b"], "n": 1},
        {"value": 2, "flag": False, "tags": None, "n": 2.5},
    ]
    boxes = np.array([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)], dtype=object)
    features = FeatureSet(boxes, props, UTM)
    assert field_schema(features) == {
        "value": "int",
        "score": "float",
        "area_m2": "float",
        "flag": "bool",
        "tags": "str",
        "n": "float",
    }
    _geoms, rows, _crs, _names = read_back(write_features(features, tmp_path / "t.parquet"))
    assert [r["flag"] for r in rows] == [True, False]
    assert [r["tags"] for r in rows] == ['["a", "b"]', None]
    assert [r["n"] for r in rows] == [1.0, 2.5]


def test_format_follows_the_extension_or_the_override() -> None:
    assert format_for_path("a/b.GPKG").name == "gpkg"
    assert format_for_path("b.json").name == "geojson"
    assert format_for_path("b.geoparquet").name == "parquet"
    assert format_for_path("b.dat", "fgb").driver == "FlatGeobuf"
    assert [f.extension for f in FORMATS] == [".geojson", ".gpkg", ".fgb", ".parquet", ".shp"]


@pytest.mark.parametrize("name", ["out.txt", "out", "out.kml"])
def test_an_unknown_extension_is_a_clear_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        write_features(lake_features(), tmp_path / name)
    assert ".geojson, .json, .gpkg, .fgb, .parquet, .geoparquet, .shp" in info.value.detail
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_format_name_lists_the_formats() -> None:
    with pytest.raises(InvalidRequest, match="geojson, gpkg, fgb, parquet, shp"):
        format_for_path("out.gpkg", "kml")


@pytest.mark.parametrize("ext", [".gpkg", ".parquet", ".geojson"])
def test_an_interrupted_write_leaves_no_partial_file(
    tmp_path: Path, ext: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"out{ext}"
    write_features(lake_features(), path)
    before = path.read_bytes()

    def interrupt(*_args: object, **_kwargs: object) -> None:
        (tmp_path / ".partial-evidence").write_text("called")
        raise KeyboardInterrupt

    target = {".gpkg": (raw, "write"), ".parquet": (writers, "_write_geoparquet")}
    if ext in target:
        monkeypatch.setattr(*target[ext], interrupt)
    else:
        monkeypatch.setattr(writers, "_geojson", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_features(FeatureSet.empty(UTM), path)
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == [".partial-evidence", path.name]


def test_a_missing_folder_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_features(lake_features(), tmp_path / "nope" / "out.gpkg")
