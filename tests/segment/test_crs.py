"""CRS handling: identification, the GeoJSON ``crs`` member, ground areas, reprojection."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from label_fixtures import FixedLabels, assert_same_vertices, pixel_polygons, through
from pyproj import CRS, Geod, Transformer
from rasterio.transform import from_origin

from geolibre_ml.segment import AutomaticPrompt, InvalidRequest, OutputOptions, segment_raster
from geolibre_ml.segment.crs import (
    exact_authority,
    geojson_crs_member,
    ground_area_m2,
    map_to_pixel,
    ogc_urn,
    parse_crs,
    reproject,
    to_pyproj,
)
from geolibre_ml.segment.features import FeatureSet
from geolibre_ml.segment.geojson import geojson_bytes
from geolibre_ml.segment.writers import write_features
from support.rasters import write_raster

UTM = CRS.from_epsg(32633)
WGS84 = CRS.from_epsg(4326)
# A transverse Mercator with no authority code anywhere.
CUSTOM = CRS.from_proj4(
    "+proj=tmerc +lat_0=10 +lon_0=13.3 +k=0.9996 +x_0=500 +y_0=0 +ellps=GRS80 +units=m +no_defs"
)
# EPSG:32633 with a false easting one metre off: resembles EPSG, is not it.
ALMOST_UTM = CRS.from_wkt(
    UTM.to_wkt().replace('PARAMETER["False easting",500000', 'PARAMETER["False easting",500001')
)


# -- identification -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("EPSG:32633", ("EPSG", "32633")),
        ("EPSG:4326", ("EPSG", "4326")),
        ("ESRI:54009", ("ESRI", "54009")),
        ("ESRI:102003", ("ESRI", "102003")),
        ("ESRI:102100", ("ESRI", "102100")),  # PROJ lists no EPSG twin for it
        ("OGC:CRS84", ("OGC", "CRS84")),
        # Same datum, parameters and axes as EPSG:32633; only the name differs.
        ("+proj=utm +zone=33 +datum=WGS84 +units=m +no_defs", ("EPSG", "32633")),
        # Same ellipsoid but an unknown datum: not EPSG:32633.
        ("+proj=utm +zone=33 +ellps=WGS84 +units=m +no_defs", None),
    ],
)
def test_exact_authority(text: str, expected: tuple[str, str] | None) -> None:
    assert exact_authority(CRS.from_user_input(text)) == expected


def test_a_crs_that_only_resembles_an_epsg_one_keeps_its_definition() -> None:
    assert ALMOST_UTM.name == "WGS 84 / UTM zone 33N"  # even its name is the EPSG one
    assert exact_authority(ALMOST_UTM) is None
    member = geojson_crs_member(ALMOST_UTM)
    assert member is not None
    # Its WKT carries no EPSG:32633 identifier, which readers would trust over the definition.
    assert member["properties"]["name"] == member["properties"]["wkt"]
    assert 'ID["EPSG",32633]' not in member["properties"]["wkt"]
    assert CRS.from_wkt(member["properties"]["wkt"]).equals(ALMOST_UTM)
    assert not CRS.from_wkt(member["properties"]["wkt"]).equals(UTM)


@pytest.mark.parametrize(
    "code", [4326, 3857, 32633, 32761, 2154, 27700, 3035, 2263, 4269, 3413, 5070, 4807, 27572]
)
def test_crs_read_back_from_a_geotiff_is_recognised_as_plain_epsg(
    tmp_path: Path, code: int
) -> None:
    path = write_raster(
        tmp_path / "epsg.tif",
        np.zeros((1, 4, 4), dtype=np.uint8),
        crs=f"EPSG:{code}",
        transform=from_origin(1000.0, 2000.0, 1.0, 1.0),
    )
    with rasterio.open(path) as ds:
        crs = to_pyproj(ds.crs)
    assert crs is not None
    assert exact_authority(crs) == ("EPSG", str(code))
    assert geojson_crs_member(crs) == {
        "type": "name",
        "properties": {"name": f"urn:ogc:def:crs:EPSG::{code}"},
    }


def test_custom_crs_in_a_geotiff_stays_custom(tmp_path: Path) -> None:
    path = write_raster(
        tmp_path / "custom.tif",
        np.zeros((1, 4, 4), dtype=np.uint8),
        crs=CUSTOM.to_wkt(),
        transform=from_origin(1000.0, 2000.0, 1.0, 1.0),
    )
    with rasterio.open(path) as ds:
        crs = to_pyproj(ds.crs)
    assert crs is not None and exact_authority(crs) is None
    assert crs.equals(CUSTOM)


def test_to_pyproj_accepts_what_callers_hold() -> None:
    assert to_pyproj(None) is None
    assert to_pyproj(UTM) is UTM
    assert to_pyproj("EPSG:32633") == UTM
    assert to_pyproj(rasterio.crs.CRS.from_epsg(32633)) == UTM
    assert to_pyproj(rasterio.crs.CRS()) is None


def test_parse_crs_explains_what_it_wants() -> None:
    assert parse_crs(" EPSG:4326 ", field="output_crs") == WGS84
    assert parse_crs("urn:ogc:def:crs:EPSG::32633", field="output_crs") == UTM
    with pytest.raises(InvalidRequest, match=r"output_crs 'EPSG:99999999'.*EPSG:4326"):
        parse_crs("EPSG:99999999", field="output_crs")


def test_ogc_urns() -> None:
    assert ogc_urn("EPSG", "32633") == "urn:ogc:def:crs:EPSG::32633"
    assert ogc_urn("ESRI", "54009") == "urn:ogc:def:crs:ESRI::54009"
    assert ogc_urn("OGC", "CRS84") == "urn:ogc:def:crs:OGC:1.3:CRS84"
    assert ogc_urn("IAU_2015", "30100") == "urn:ogc:def:crs:IAU:2015:30100"


# -- the crs member -----------------------------------------------------------------


def test_member_for_epsg_is_the_urn_alone() -> None:
    assert geojson_crs_member(UTM) == {
        "type": "name",
        "properties": {"name": "urn:ogc:def:crs:EPSG::32633"},
    }
    assert geojson_crs_member(WGS84) == {
        "type": "name",
        "properties": {"name": "urn:ogc:def:crs:EPSG::4326"},
    }
    assert geojson_crs_member(None) is None


@pytest.mark.parametrize("code", ["102003", "54009"])
def test_member_for_esri_is_its_urn_plus_wkt2(code: str) -> None:
    crs = CRS.from_user_input(f"ESRI:{code}")
    member = geojson_crs_member(crs)
    assert member is not None
    props = member["properties"]
    assert props["name"] == f"urn:ogc:def:crs:ESRI::{code}"
    assert props["wkt"].startswith("PROJCRS[")
    assert CRS.from_wkt(props["wkt"]).equals(crs)


def test_member_for_a_crs_without_authority_is_wkt2_in_name_and_wkt() -> None:
    member = geojson_crs_member(CUSTOM)
    assert member is not None
    props = member["properties"]
    assert props["name"] == props["wkt"]
    assert props["wkt"].startswith("PROJCRS[")
    assert CRS.from_wkt(props["wkt"]).equals(CUSTOM)
    assert CRS.from_user_input(props["name"]).equals(CUSTOM)


@pytest.mark.parametrize("crs", [UTM, CUSTOM, CRS.from_user_input("ESRI:54009"), ALMOST_UTM, WGS84])
def test_answers_and_files_come_from_one_serializer(tmp_path: Path, crs: CRS) -> None:
    # One serializer: the same crs member (WGS 84 included), the same properties and
    # NaN handling, whether the collection is an answer or a file.
    features = FeatureSet(
        np.array([shapely.box(1, 2, 3, 4)], dtype=object),
        [{"value": 1, "score": float("nan"), "mode": "automatic"}],
        crs,
    )
    answer = json.loads(geojson_bytes(features, name="scene"))
    written = json.loads(write_features(features, tmp_path / "scene.geojson").read_bytes())
    assert answer["crs"] == written["crs"] == geojson_crs_member(crs)
    assert answer["name"] == written["name"] == "scene"
    assert answer["features"][0]["properties"] == {"value": 1, "mode": "automatic"}
    assert {k: v for k, v in written["features"][0]["properties"].items() if v is not None} == {
        "value": 1,
        "mode": "automatic",
    }
    info = pyogrio.read_info(tmp_path / "scene.geojson")
    assert CRS.from_user_input(info["crs"]).equals(crs)


@pytest.mark.parametrize("crs", [CUSTOM, ALMOST_UTM, CRS.from_user_input("ESRI:54009")])
def test_gdal_reads_the_answer_back_in_the_same_crs(tmp_path: Path, crs: CRS) -> None:
    features = FeatureSet(
        np.array([shapely.box(100, 200, 110, 210)], dtype=object), [{"value": 1}], crs
    )
    answer = tmp_path / "answer.geojson"
    answer.write_bytes(geojson_bytes(features))
    info = pyogrio.read_info(answer)
    assert CRS.from_user_input(info["crs"]).equals(crs)
    # The CLI's file writer says the same.
    written = write_features(features, tmp_path / "file.geojson")
    assert CRS.from_user_input(pyogrio.read_info(written)["crs"]).equals(crs)


# -- ground areas -------------------------------------------------------------------

WGS84_A = 6378137.0
WGS84_F = 1 / 298.257223563


def zone_area(lat1: float, lat2: float, dlon: float) -> float:
    """Exact area (m²) of the WGS 84 ellipsoid between two parallels over ``dlon`` degrees."""
    e2 = WGS84_F * (2 - WGS84_F)
    e = math.sqrt(e2)

    def q(lat: float) -> float:
        s = math.sin(math.radians(lat))
        return (1 - e2) * (s / (1 - e2 * s * s) + math.atanh(e * s) / e)

    return WGS84_A**2 / 2 * math.radians(dlon) * (q(lat2) - q(lat1))


def geodesic_reference(geometry: shapely.Geometry, crs: CRS, step: float) -> float:
    """Karney's geodesic area of ``geometry`` densified to ``step`` CRS units."""
    to_lonlat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    dense = shapely.segmentize(geometry, step)
    lonlat = shapely.transform(dense, lambda xy: np.column_stack(to_lonlat.transform(*xy.T)))
    return abs(Geod(ellps="WGS84").geometry_area_perimeter(lonlat)[0])


def test_one_degree_cell_on_the_equator() -> None:
    (area,) = ground_area_m2(np.array([shapely.box(0, 0, 1, 1)]), WGS84)
    assert zone_area(0, 1, 1) == pytest.approx(12_308_463_894, abs=1)
    assert area == pytest.approx(zone_area(0, 1, 1), rel=1e-12)


@pytest.mark.parametrize(
    ("box", "zone"),
    [
        ((10, 60, 11, 61), (60, 61, 1)),
        ((179.5, 89, 180.5, 90), (89, 90, 1)),  # across the antimeridian, up to the pole
        ((-180, -90, 180, 90), (-90, 90, 360)),  # the whole ellipsoid
        ((0, 0, 1e-5, 1e-5), (0, 1e-5, 1e-5)),  # about one square metre
    ],
)
def test_geographic_cells_are_exact(box: tuple, zone: tuple) -> None:
    (area,) = ground_area_m2(np.array([shapely.box(*box)]), WGS84)
    assert area == pytest.approx(zone_area(*zone), rel=1e-12)


def test_utm_square_is_its_planar_area_over_the_scale_factor_squared() -> None:
    square = shapely.box(500000, 4000000, 501000, 4001000)  # on the central meridian
    (area,) = ground_area_m2(np.array([square]), UTM)
    assert area == pytest.approx(1e6 / 0.9996**2, rel=2e-7)
    assert area == pytest.approx(geodesic_reference(square, UTM, 1.0), rel=1e-8)


def test_web_mercator_at_60_degrees_gives_the_true_not_the_planar_area() -> None:
    mercator = CRS.from_epsg(3857)
    x, y = Transformer.from_crs(WGS84, mercator, always_xy=True).transform(10.0, 60.0)
    square = shapely.box(x, y, x + 2000, y + 2000)  # 4 km² on the map
    (area,) = ground_area_m2(np.array([square]), mercator)
    # The scale at 60°N is 2: the ground square is 1 km on a side.
    assert area == pytest.approx(1.0e6, rel=5e-3)
    assert area == pytest.approx(geodesic_reference(square, mercator, 1.0), rel=1e-8)


def test_us_survey_feet() -> None:
    feet = CRS.from_epsg(2263)  # NAD83 / New York Long Island (ftUS)
    side = 1000 / 0.3048006096012192  # 1 km in US survey feet
    square = shapely.box(980000, 190000, 980000 + side, 190000 + side)
    (area,) = ground_area_m2(np.array([square]), feet)
    assert area == pytest.approx(1.0e6, rel=1e-4)  # a conformal conic: scale close to 1
    assert area == pytest.approx(geodesic_reference(square, feet, 3.0), rel=1e-8)


def test_areas_of_holes_parts_large_and_polar_polygons() -> None:
    square = shapely.box(500000, 4000000, 501000, 4001000)
    holed = square.difference(shapely.box(500100, 4000100, 500200, 4000200))
    twice = shapely.MultiPolygon([square, shapely.box(502000, 4000000, 503000, 4001000)])
    large = shapely.box(400000, 6000000, 700000, 6300000)  # 300 km: edges get divided
    areas = ground_area_m2(np.array([square, holed, twice, large, shapely.Polygon()]), UTM)
    assert areas[1] == pytest.approx(areas[0] * 0.99, rel=1e-6)
    assert areas[2] == pytest.approx(2 * areas[0], rel=1e-6)
    assert areas[3] == pytest.approx(geodesic_reference(large, UTM, 50.0), rel=1e-8)
    assert areas[4] == 0
    polar = CRS.from_epsg(3413)
    around_pole = shapely.box(-50000, -50000, 50000, 50000)
    (area,) = ground_area_m2(np.array([around_pole]), polar)
    assert area == pytest.approx(geodesic_reference(around_pole, polar, 10.0), rel=1e-8)


def test_no_ground_area_in_pixel_space_or_unknown_units() -> None:
    assert ground_area_m2(np.array([shapely.box(0, 0, 1, 1)]), None) is None
    local_feet = CRS.from_wkt(
        'ENGCRS["site grid",EDATUM["site"],CS[Cartesian,2],'
        'AXIS["x",east,ORDER[1],LENGTHUNIT["foot",0.3048]],'
        'AXIS["y",north,ORDER[2],LENGTHUNIT["foot",0.3048]]]'
    )
    (area,) = ground_area_m2(np.array([shapely.box(0, 0, 10, 10)]), local_feet)
    assert area == pytest.approx(100 * 0.3048**2, rel=1e-12)
    assert len(ground_area_m2(np.empty(0, dtype=object), UTM)) == 0


# -- reprojection ---------------------------------------------------------------------


def test_output_crs_4326_is_longitude_then_latitude(tmp_path: Path) -> None:
    transform = from_origin(500000.0, 4000000.0, 10.0, 10.0)
    path = write_raster(
        tmp_path / "utm.tif",
        np.full((3, 8, 10), 120, np.uint8),
        crs="EPSG:32633",
        transform=transform,
    )
    result = segment_raster(
        path, AutomaticPrompt(), FixedLabels(), output=OutputOptions(output_crs="EPSG:4326")
    )
    assert result.output_crs == WGS84
    to_lonlat = Transformer.from_crs(UTM, WGS84, always_xy=True)
    first = result.features.geometries[0]
    lon, lat = first.exterior.coords[0]
    assert 14.9 < lon < 15.1 and 36.1 < lat < 36.2  # zone 33's central meridian is 15°E
    for props, geometry in zip(result.features.properties, result.features.geometries, strict=True):
        expected = through(transform, pixel_polygons()[props["value"]])
        expected = shapely.transform(
            expected, lambda xy: np.column_stack(to_lonlat.transform(*xy.T))
        )
        assert_same_vertices(geometry, expected)
    body = json.loads(geojson_bytes(result.features))
    assert body["crs"]["properties"] == {"name": "urn:ogc:def:crs:EPSG::4326"}
    # Areas are those of the pixels on the ground, whatever the output CRS.
    plain = segment_raster(path, AutomaticPrompt(), FixedLabels())
    assert [p["area_m2"] for p in result.features.properties] == [
        p["area_m2"] for p in plain.features.properties
    ]


def test_reprojection_keeps_shared_vertices_shared() -> None:
    a = shapely.box(500000, 4000000, 500010, 4000010)
    b = shapely.box(500010, 4000000, 500020, 4000010)
    out = reproject(np.array([a, b]), UTM, WGS84)
    shared_a = {c for c in out[0].exterior.coords if c in set(out[1].exterior.coords)}
    assert len(shared_a) == 2
    assert reproject(np.array([a, b]), UTM, CRS.from_user_input("EPSG:32633"))[0] is a


@pytest.mark.parametrize(
    "target",
    [
        "+proj=ortho +lat_0=-45 +lon_0=-170 +ellps=WGS84",  # the far side of the globe
        "+proj=geos +h=35785831 +lon_0=-140 +ellps=WGS84",  # a satellite's view, from afar
    ],
)
def test_output_crs_that_cannot_hold_the_area_is_a_bad_request(tmp_path: Path, target: str) -> None:
    labels = np.zeros((8, 10), dtype=np.int32)
    labels[0:2, 0:4] = 1
    path = write_raster(
        tmp_path / "europe.tif",
        np.full((3, 8, 10), 120, np.uint8),
        crs="EPSG:4326",
        transform=from_origin(10.0, 50.0, 1.0, 1.0),
    )
    with pytest.raises(InvalidRequest, match="cannot represent this raster's area"):
        segment_raster(
            path,
            AutomaticPrompt(),
            FixedLabels(labels, np.array([np.nan, 1.0])),
            output=OutputOptions(output_crs=target),
        )


def test_map_to_pixel_inverts_a_rotated_transform() -> None:
    transform = Affine.translation(500000, 4000000) @ Affine.rotation(30) @ Affine.scale(10, -10)
    pixels = np.array([[0.0, 0.0], [10.0, 8.0], [3.5, 2.25]])
    x, y = transform @ (pixels[:, 0], pixels[:, 1])
    back = map_to_pixel(np.column_stack([x, y]), from_crs=UTM, raster_crs=UTM, transform=transform)
    np.testing.assert_allclose(back, pixels, atol=1e-9)
    lon, lat = Transformer.from_crs(UTM, WGS84, always_xy=True).transform(x, y)
    back = map_to_pixel(
        np.column_stack([lon, lat]), from_crs=WGS84, raster_crs=UTM, transform=transform
    )
    np.testing.assert_allclose(back, pixels, atol=1e-6)
    with pytest.raises(InvalidRequest, match="point_crs"):
        map_to_pixel(
            np.array([[0.0, 95.0]]),
            from_crs=WGS84,
            raster_crs=CRS.from_epsg(3857),
            transform=transform,
        )


def test_a_raster_across_the_antimeridian_stays_whole_in_longitudes(tmp_path: Path) -> None:
    utm60 = CRS.from_epsg(32660)  # central meridian 177°E: 180° lies near x = 700 km at 54°N
    transform = from_origin(626000.0, 6000000.0, 10000.0, 10000.0)  # object 2 straddles 180°
    path = write_raster(
        tmp_path / "bering.tif",
        np.full((3, 8, 10), 120, np.uint8),
        crs="EPSG:32660",
        transform=transform,
    )
    result = segment_raster(
        path, AutomaticPrompt(), FixedLabels(), output=OutputOptions(output_crs="EPSG:4326")
    )
    geometries = result.features.geometries
    lon = shapely.get_coordinates(geometries)[:, 0]
    assert lon.min() > 179.0 and lon.max() < 181.0 and lon.max() > 180.0
    assert geometries[1].bounds[0] < 180.0 < geometries[1].bounds[2]  # drawn whole
    assert shapely.is_valid(geometries).all()
    to_lonlat = Transformer.from_crs(utm60, WGS84, always_xy=True)

    def lonlat(xy: np.ndarray) -> np.ndarray:
        x, y = to_lonlat.transform(*xy.T)
        return np.column_stack([np.where(x < 0, x + 360.0, x), y])

    for props, geometry in zip(result.features.properties, geometries, strict=True):
        expected = through(transform, pixel_polygons()[props["value"]])
        assert_same_vertices(geometry, shapely.transform(expected, lonlat))


def test_features_spread_over_the_globe_keep_longitudes_from_minus_180_to_180() -> None:
    mercator = CRS.from_epsg(3857)
    west = shapely.box(-17000000, 1000000, -16000000, 2000000)  # about 150°W
    east = shapely.box(16000000, 1000000, 17000000, 2000000)  # about 145°E
    out = reproject(np.array([west, east]), mercator, WGS84)
    assert out[0].bounds[0] == pytest.approx(-152.71, abs=0.01)
    assert out[1].bounds[2] == pytest.approx(152.71, abs=0.01)


def test_areas_are_computed_in_batches_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from geolibre_ml.segment import crs as crs_module

    squares = [
        shapely.box(500000 + 20 * i, 4000000, 500010 + 20 * i, 4000000 + i + 1) for i in range(50)
    ]
    geometries = np.array([*squares, shapely.Polygon(), squares[0]], dtype=object)
    whole = ground_area_m2(geometries, UTM)
    monkeypatch.setattr(crs_module, "_AREA_BATCH", 7)  # a batch every other polygon
    np.testing.assert_array_equal(ground_area_m2(geometries, UTM), whole)
    assert len(whole) == 52 and whole[50] == 0 and whole[51] == whole[0]
    np.testing.assert_allclose(whole[:50], [10 * (i + 1) / 0.9996**2 for i in range(50)], rtol=2e-6)


def test_polygons_off_a_geostationary_disk_get_no_area_and_no_warning() -> None:
    # A geostationary view: PROJ cannot place points beyond the Earth's limb (about
    # 5,434 km from the centre on this plane), so a polygon there has no ground area.
    geos = CRS.from_proj4("+proj=geos +h=35785831 +lon_0=0 +datum=WGS84 +units=m")
    on_disk = shapely.box(0.0, 0.0, 10_000.0, 10_000.0)
    off_disk = shapely.box(6_000_000.0, 0.0, 6_010_000.0, 10_000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        areas = ground_area_m2(np.array([on_disk, off_disk], dtype=object), geos)
    assert 0.9e8 < areas[0] < 1.1e8  # 10 km x 10 km near the sub-satellite point
    assert np.isnan(areas[1])
