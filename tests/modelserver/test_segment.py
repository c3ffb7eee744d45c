"""The /segment/* endpoints and each of their fields (samgeo-api's and our additions)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import shapely
import shapely.geometry
from pyproj import Transformer

from .helpers import (
    LAKE_BOX,
    LAKE_CENTRE,
    PIXEL,
    Images,
    detail,
    geometries,
    pixel_to_map,
    segment,
)


def map_box(box: list[float]) -> shapely.Polygon:
    """A pixel box of the test GeoTIFFs as a polygon in their CRS."""
    x0, y0 = pixel_to_map(box[0], box[1])
    x1, y1 = pixel_to_map(box[2], box[3])
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def largest(collection: dict) -> shapely.Geometry:
    geoms = geometries(collection)
    return geoms[int(np.argmax(shapely.area(geoms)))]


def test_text_finds_the_lake_with_every_property(client: httpx.Client, images: Images) -> None:
    response = segment(client, "text", images.multispectral, {"prompt": "water"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["type"] == "FeatureCollection"
    assert body["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    lake = largest(body)
    assert lake.contains(shapely.Point(pixel_to_map(*LAKE_CENTRE)))
    assert map_box(LAKE_BOX).contains(lake)
    for feature in body["features"]:
        assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
        props = feature["properties"]
        assert props["mode"] == "text"
        assert props["prompt"] == "water"
        assert props["model"] == "classic"
        assert props["source"] == "scene.tif"
        assert 0.5 <= props["score"] <= 1
        assert isinstance(props["value"], int)
        # Geodesic ground area, close to the planar UTM area (scale factor ~0.9996).
        planar = shapely.geometry.shape(feature["geometry"]).area
        assert props["area_m2"] == pytest.approx(planar, rel=0.01)


def test_text_confidence_threshold_keeps_scores_at_or_above_it(
    client: httpx.Client, images: Images
) -> None:
    covered = {}
    for threshold in (0.05, 0.5, 0.95):
        response = segment(
            client,
            "text",
            images.multispectral,
            {"prompt": "trees", "confidence_threshold": str(threshold)},
        )
        assert response.status_code in (200, 404), response.text
        if response.status_code == 404:
            assert detail(response).startswith("No objects found for the given prompt")
            covered[threshold] = 0.0
            continue
        features = response.json()["features"]
        assert all(f["properties"]["score"] >= threshold for f in features)
        covered[threshold] = shapely.union_all(geometries(response.json())).area
    # Lower finds more, higher is stricter.
    assert covered[0.05] >= covered[0.5] >= covered[0.95]
    assert covered[0.5] > 0


def test_text_accepts_samgeo_backend_field(client: httpx.Client, images: Images) -> None:
    plain = segment(client, "text", images.multispectral, {"prompt": "water"})
    for backend in ("meta", "transformers"):
        with_backend = segment(
            client, "text", images.multispectral, {"prompt": "water", "backend": backend}
        )
        assert with_backend.status_code == 200
        assert with_backend.json() == plain.json()


def test_text_prompt_spacing_and_case_do_not_matter(client: httpx.Client, images: Images) -> None:
    plain = segment(client, "text", images.multispectral, {"prompt": "water"})
    loose = segment(client, "text", images.multispectral, {"prompt": "  Water \n"})
    assert loose.status_code == 200
    assert geometries(loose.json()).tolist() == geometries(plain.json()).tolist()


def test_model_version_absent_means_the_server_default(
    client: httpx.Client, images: Images
) -> None:
    # SAM 3 is not ready here (GET /models says so), so the default is classic.
    assert client.get("/models").json()["ready"]["sam3"] is False
    for mode, data in (("text", {"prompt": "water"}), ("automatic", {})):
        response = segment(client, mode, images.rgb_tif, data)
        assert response.status_code == 200
        assert {f["properties"]["model"] for f in response.json()["features"]} == {"classic"}


@pytest.mark.parametrize("mode", ["text", "automatic", "predict"])
def test_sam3_is_503_with_how_to(client: httpx.Client, images: Images, mode: str) -> None:
    data = {
        "text": {"prompt": "water"},
        "automatic": {},
        "predict": {"boxes": json.dumps([LAKE_BOX])},
    }[mode]
    response = segment(client, mode, images.rgb_tif, {**data, "model_version": "sam3"})
    assert response.status_code == 503
    message = detail(response)
    assert "SAM 3" in message
    assert "model_version=classic" in message
    assert "geolibre-ml download-model sam3" in message and "HF_TOKEN" in message


def test_model_id_default_is_accepted_and_unknown_is_400(
    client: httpx.Client, images: Images
) -> None:
    data = {"prompt": "water", "model_version": "classic"}
    ok = segment(client, "text", images.multispectral, {**data, "model_id": "default"})
    assert ok.status_code == 200
    assert ok.json()["features"][0]["properties"]["model_id"] == "default"
    bad = segment(client, "text", images.multispectral, {**data, "model_id": "vit_h"})
    assert bad.status_code == 400
    assert "Unknown model_id 'vit_h'" in detail(bad)
    assert "default" in detail(bad)


def test_automatic_accepts_every_samgeo_field(client: httpx.Client, images: Images) -> None:
    response = segment(
        client,
        "automatic",
        images.rgb_tif,
        {
            # With unique=true, foreground does not apply (samgeo's save_masks too);
            # unique=false is test_automatic_unique_false_is_one_binary_mask.
            "foreground": "false",
            "unique": "true",
            "points_per_side": "16",
            "pred_iou_thresh": "0.5",
            "stability_score_thresh": "0.6",
        },
    )
    assert response.status_code == 200
    features = response.json()["features"]
    assert len(features) > 1
    assert {f["properties"]["mode"] for f in features} == {"automatic"}
    # Automatic segmentation covers the image: the objects lie within it.
    bounds = shapely.total_bounds(geometries(response.json()))
    image = map_box([0, 0, 160, 120]).bounds
    assert bounds[0] >= image[0] and bounds[1] >= image[1]
    assert bounds[2] <= image[2] and bounds[3] <= image[3]


def test_min_size_and_max_size_filter_objects_by_pixel_count(
    client: httpx.Client, images: Images
) -> None:
    def pixel_areas(data: dict) -> np.ndarray:
        response = segment(client, "automatic", images.rgb_tif, data)
        assert response.status_code == 200, response.text
        return shapely.area(geometries(response.json())) / PIXEL**2

    everything = pixel_areas({})
    assert len(everything) >= 2
    # A cut between the smallest and the largest object, so that each filter drops some.
    cut = int((everything.min() + everything.max()) / 2)
    large = pixel_areas({"min_size": str(cut)})
    assert large.min() >= cut
    assert 0 < len(large) == int((everything >= cut).sum()) < len(everything)
    small = pixel_areas({"max_size": str(cut)})
    assert small.max() <= cut
    assert 0 < len(small) == int((everything <= cut).sum()) < len(everything)
    # samgeo-api: max_size 0 (or less) means no limit.
    assert len(pixel_areas({"max_size": "0"})) == len(everything)
    assert len(pixel_areas({"max_size": "-1"})) == len(everything)


def test_output_crs_reprojects_polygons_and_keeps_areas(
    client: httpx.Client, images: Images
) -> None:
    native = segment(client, "text", images.multispectral, {"prompt": "water"}).json()
    response = segment(
        client, "text", images.multispectral, {"prompt": "water", "output_crs": "EPSG:4326"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::4326"
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(*pixel_to_map(*LAKE_CENTRE))
    assert largest(body).contains(shapely.Point(lon, lat))
    minx, miny, maxx, maxy = shapely.total_bounds(geometries(body))
    assert 14.9 < minx < maxx < 15.1 and 36.0 < miny < maxy < 36.2
    areas = [f["properties"]["area_m2"] for f in body["features"]]
    assert areas == [f["properties"]["area_m2"] for f in native["features"]]


@pytest.mark.parametrize("bands", ["3,2,1", "[3, 2, 1]", "3 2 1", "4"])
def test_bands_choose_the_display_bands(client: httpx.Client, images: Images, bands: str) -> None:
    response = segment(
        client, "automatic", images.multispectral, {"bands": bands, "min_size": "20"}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["features"]) > 0


def test_tile_fields_are_documented_with_their_defaults(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    form = next(v for k, v in schema.items() if k.startswith("Body_segment_text"))
    assert "1008" in form["properties"]["tile_size"]["description"]
    assert "eighth" in form["properties"]["tile_overlap"]["description"]


def test_tile_size_splits_a_raster_into_tiles_with_the_same_answer(
    client: httpx.Client, images: Images
) -> None:
    whole = segment(client, "text", images.multispectral, {"prompt": "water"})
    tiled = segment(
        client,
        "text",
        images.multispectral,
        {"prompt": "water", "tile_size": "64", "tile_overlap": "16"},
    )
    assert whole.status_code == tiled.status_code == 200, tiled.text
    a = shapely.union_all([shapely.geometry.shape(f["geometry"]) for f in whole.json()["features"]])
    b = shapely.union_all([shapely.geometry.shape(f["geometry"]) for f in tiled.json()["features"]])
    assert len(tiled.json()["features"]) == len(whole.json()["features"])
    assert shapely.symmetric_difference(a, b).area < 0.02 * a.area


def test_simplify_tolerance_reduces_vertices_within_the_tolerance(
    client: httpx.Client, images: Images
) -> None:
    exact = largest(segment(client, "text", images.multispectral, {"prompt": "water"}).json())
    response = segment(
        client, "text", images.multispectral, {"prompt": "water", "simplify_tolerance": "15"}
    )
    assert response.status_code == 200
    simple = largest(response.json())
    assert shapely.get_num_coordinates(simple) < shapely.get_num_coordinates(exact)
    assert shapely.hausdorff_distance(simple, exact) <= 15 + 1e-6
    assert simple.is_valid


def test_predict_box_in_pixels_segments_inside_the_box(
    client: httpx.Client, images: Images
) -> None:
    response = segment(client, "predict", images.multispectral, {"boxes": json.dumps([LAKE_BOX])})
    assert response.status_code == 200
    body = response.json()
    assert len(body["features"]) == 1
    props = body["features"][0]["properties"]
    assert props["mode"] == "predict" and "prompt" not in props
    assert 0 <= props["score"] <= 1
    box = map_box(LAKE_BOX)
    assert box.buffer(PIXEL).contains(largest(body))
    assert largest(body).area > 0.3 * box.area


def test_predict_box_in_point_crs_matches_the_pixel_box(
    client: httpx.Client, images: Images
) -> None:
    pixels = segment(client, "predict", images.multispectral, {"boxes": json.dumps([LAKE_BOX])})
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    # The lon/lat box that encloses the pixel box (UTM grid and meridians are not parallel).
    box = map_box(LAKE_BOX).buffer(-2 * PIXEL, join_style="mitre")
    lon, lat = to_lonlat.transform(*np.asarray(box.exterior.coords).T)
    lonlat_box = [min(lon), min(lat), max(lon), max(lat)]
    response = segment(
        client,
        "predict",
        images.multispectral,
        {"boxes": json.dumps([lonlat_box]), "point_crs": "EPSG:4326"},
    )
    assert response.status_code == 200, response.text
    a, b = largest(pixels.json()), largest(response.json())
    assert a.intersection(b).area / a.union(b).area > 0.8


def test_predict_points_with_labels(client: httpx.Client, images: Images) -> None:
    centre = [round(v) for v in LAKE_CENTRE]
    data = {"point_coords": json.dumps([centre]), "point_labels": "[1]"}
    response = segment(client, "predict", images.multispectral, data)
    # The placeholder classic algorithm answers boxes only; any answer must hold the point.
    if response.status_code == 404:
        assert detail(response).startswith("No objects found")
    else:
        assert response.status_code == 200
        assert largest(response.json()).contains(shapely.Point(pixel_to_map(*centre)))


def test_predict_box_with_points_and_multimask(client: httpx.Client, images: Images) -> None:
    centre = [round(v) for v in LAKE_CENTRE]
    data = {
        "boxes": json.dumps([LAKE_BOX]),
        "point_coords": json.dumps([centre, [LAKE_BOX[0] + 1, LAKE_BOX[1] + 1]]),
        "point_labels": "[1, 0]",
        "multimask_output": "true",
    }
    response = segment(client, "predict", images.multispectral, data)
    assert response.status_code == 200
    assert map_box(LAKE_BOX).buffer(PIXEL).contains(largest(response.json()))


def test_source_is_the_uploaded_file_name_without_folders(
    client: httpx.Client, images: Images
) -> None:
    response = segment(
        client,
        "text",
        images.multispectral,
        {"prompt": "water"},
        filename="C:\\data\\my scene.tif",
    )
    assert response.status_code == 200
    assert response.json()["features"][0]["properties"]["source"] == "my scene.tif"


OPTIONAL_FIELDS = {
    "model_version": "",
    "model_id": "",
    "max_size": "",
    "output_crs": "",
    "bands": "",
    "tile_size": "",
    "tile_overlap": "",
    "simplify_tolerance": "",
    "min_size": "",
}


@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        ("text", {"prompt": "water", "confidence_threshold": "", "backend": ""}),
        (
            "automatic",
            {
                "foreground": "",
                "unique": "",
                "points_per_side": "",
                "pred_iou_thresh": "",
                "stability_score_thresh": "",
            },
        ),
        (
            "predict",
            {
                "boxes": json.dumps([LAKE_BOX]),
                "point_coords": "",
                "point_labels": "",
                "point_crs": "",
                "multimask_output": "",
            },
        ),
    ],
)
def test_empty_optional_fields_count_as_absent(
    client: httpx.Client, images: Images, mode: str, extra: dict
) -> None:
    # Swagger UI sends "" for every field left blank.
    required = {k: v for k, v in extra.items() if v}
    plain = segment(client, mode, images.rgb_tif, required)
    blank = segment(client, mode, images.rgb_tif, {**OPTIONAL_FIELDS, "output_format": "", **extra})
    assert plain.status_code == 200
    assert blank.status_code == 200, blank.text
    assert blank.json() == plain.json()


def geolibre_form(mode: str, params: dict) -> dict[str, str]:
    """The form fields GeoLibre's ``mlSegment`` (sidecar-client.ts) sends, in its order."""
    form = {
        "model_version": params.get("modelVersion", "sam3"),
        "output_format": params.get("outputFormat", "geojson"),
    }
    if "minSize" in params:
        form["min_size"] = str(params["minSize"])
    if "maxSize" in params:
        form["max_size"] = str(params["maxSize"])
    if mode == "text":
        form["prompt"] = params.get("prompt", "")
        if "confidenceThreshold" in params:
            form["confidence_threshold"] = str(params["confidenceThreshold"])
    if mode == "predict":
        if "pointCoords" in params:
            form["point_coords"] = json.dumps(params["pointCoords"], separators=(",", ":"))
        if "pointLabels" in params:
            form["point_labels"] = json.dumps(params["pointLabels"], separators=(",", ":"))
        if "boxes" in params:
            form["boxes"] = json.dumps(params["boxes"], separators=(",", ":"))
        if params.get("pointCrs"):
            form["point_crs"] = params["pointCrs"]
    return form


def test_geolibre_default_form_asks_for_sam3_and_hears_how_to(
    client: httpx.Client, images: Images
) -> None:
    response = segment(client, "text", images.rgb_tif, geolibre_form("text", {"prompt": "water"}))
    assert response.status_code == 503
    assert "model_version=classic" in detail(response)


def test_geolibre_forms_with_classic(client: httpx.Client, images: Images) -> None:
    text = segment(
        client,
        "text",
        images.multispectral,
        geolibre_form(
            "text",
            {
                "modelVersion": "classic",
                "prompt": "water",
                "confidenceThreshold": 0.5,
                "minSize": 10,
                "maxSize": 0,
            },
        ),
    )
    assert text.status_code == 200
    assert largest(text.json()).contains(shapely.Point(pixel_to_map(*LAKE_CENTRE)))

    automatic = segment(
        client, "automatic", images.rgb_tif, geolibre_form("automatic", {"modelVersion": "classic"})
    )
    assert automatic.status_code == 200
    assert automatic.json()["type"] == "FeatureCollection"

    # Map-drawn geometry: a box in EPSG:4326 around the lake.
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    x0, y0, x1, y1 = map_box(LAKE_BOX).bounds
    (lon0, lon1), (lat0, lat1) = to_lonlat.transform([x0 + 20, x1 - 20], [y0 + 20, y1 - 20])
    predict = segment(
        client,
        "predict",
        images.multispectral,
        geolibre_form(
            "predict",
            {
                "modelVersion": "classic",
                "boxes": [[lon0, lat0, lon1, lat1]],
                "pointCrs": "EPSG:4326",
            },
        ),
    )
    assert predict.status_code == 200, predict.text
    assert map_box(LAKE_BOX).buffer(2 * PIXEL).contains(largest(predict.json()))


def test_geolibre_empty_text_prompt_is_a_clear_error(client: httpx.Client, images: Images) -> None:
    response = segment(
        client, "text", images.rgb_tif, geolibre_form("text", {"modelVersion": "classic"})
    )
    assert response.status_code == 422
    assert "prompt is required" in detail(response)


def test_automatic_unique_false_is_one_binary_mask(client: httpx.Client, images: Images) -> None:
    response = segment(client, "automatic", images.rgb_tif, {"unique": "false"})
    assert response.status_code == 200
    features = response.json()["features"]
    assert [f["properties"]["value"] for f in features] == [1]
