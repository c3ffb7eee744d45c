"""The sam3 backend on a tiny, randomly initialised SAM 3 loaded like a real checkpoint.

Outputs of random weights mean nothing, so these tests check what does not depend on
them: loading and the catalogue, shapes, thresholds, georeferencing, the shared image
encoder, caching and eviction, batching, and the prompt modes' structure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.transform import from_origin
from rasterio.windows import Window

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from geolibre_ml.segment import backends  # noqa: E402
from geolibre_ml.segment.backends.sam3 import Sam3Backend, choose_dtype  # noqa: E402
from geolibre_ml.segment.cache import PreparedCache  # noqa: E402
from geolibre_ml.segment.chip import ImageChip  # noqa: E402
from geolibre_ml.segment.errors import InvalidRequest, ModelUnavailable  # noqa: E402
from geolibre_ml.segment.models import ModelManager  # noqa: E402
from geolibre_ml.segment.pipeline import plan_run, segment_raster  # noqa: E402
from geolibre_ml.segment.prompts import (  # noqa: E402
    AutomaticPrompt,
    PointBoxPrompt,
    TextPrompt,
)
from geolibre_ml.segment.raster import RasterSource  # noqa: E402
from geolibre_ml.segment.weights import catalogue, locate  # noqa: E402
from support.rasters import UTM_CRS, write_raster  # noqa: E402


def chip_of(rgb: np.ndarray) -> ImageChip:
    height, width = rgb.shape[:2]
    return ImageChip(
        rgb=rgb,
        valid=np.ones((height, width), bool),
        window=Window(0, 0, width, height),
        transform=Affine.identity(),
    )


def picture(height: int = 90, width: int = 130, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((height, width, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model(sam3_checkpoint: Path) -> Sam3Backend:
    return Sam3Backend(str(sam3_checkpoint), device="cpu", dtype="float32")


class Calls:
    """Counts forward passes of a module."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.count = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.count += 1

    def close(self) -> None:
        self._handle.remove()


# -- loading -------------------------------------------------------------------------


def test_the_configured_folder_loads_and_is_the_default_of_the_catalogue(
    sam3_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, offline_hf: Path
) -> None:
    monkeypatch.setenv("GEOLIBRE_ML_SAM3_MODEL", str(sam3_checkpoint))
    assert catalogue() == (str(sam3_checkpoint), "facebook/sam3")
    assert backends.availability("sam3").ready
    assert not backends.availability("sam3", "facebook/sam3").ready  # empty HF cache
    manager = ModelManager(device="cpu")
    assert manager.resolve(None, None) == ("sam3", str(sam3_checkpoint))
    catalog = manager.catalog()
    assert catalog["ready"]["sam3"] is True
    assert catalog["models"]["sam3"] == [str(sam3_checkpoint), "facebook/sam3"]
    assert catalog["loaded"] == []  # listing loads nothing


def test_input_size_and_shapes_come_from_the_checkpoint(model: Sam3Backend) -> None:
    assert model.input_size == 112  # the tiny configuration, not SAM 3's 1008
    features = model.prepare(chip_of(picture()))
    assert features.shape == (90, 130)
    assert [tuple(f.shape[-2:]) for f in features.fpn] == [(32, 32), (16, 16), (8, 8), (4, 4)]


def test_facebook_sam3_is_found_in_an_offline_hugging_face_cache(
    sam3_hf_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(sam3_hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GEOLIBRE_ML_SAM3_MODEL", raising=False)
    assert locate("facebook/sam3").folder is not None
    assert ModelManager(device="cpu").default_version() == "sam3"
    backend = Sam3Backend("facebook/sam3", device="cpu", dtype="float32")
    assert backend.tracker is not None


def test_without_weights_sam3_says_how_to_get_them_and_classic_is_the_default(
    offline_hf: Path,
) -> None:
    state = backends.availability("sam3")
    assert not state.ready
    assert "geolibre-ml download-model sam3" in state.message
    assert "HF_TOKEN" in state.message
    assert "https://huggingface.co/facebook/sam3" in state.message
    assert ModelManager(device="cpu").default_version() == "classic"
    with pytest.raises(ModelUnavailable, match="download-model"):
        Sam3Backend("facebook/sam3", device="cpu")


def test_a_request_cannot_name_a_model_outside_the_catalogue(
    sam3_checkpoint: Path, offline_hf: Path
) -> None:
    with pytest.raises(InvalidRequest, match="Known ids: facebook/sam3"):
        backends.resolve_model_id("sam3", str(sam3_checkpoint))
    with pytest.raises(InvalidRequest):
        backends.resolve_model_id("sam3", "/etc")


def test_the_dtype_is_bfloat16_on_cuda_and_can_be_chosen(
    monkeypatch: pytest.MonkeyPatch, sam3_checkpoint: Path
) -> None:
    monkeypatch.delenv("GEOLIBRE_ML_SAM3_DTYPE", raising=False)
    assert choose_dtype("cuda") == "bfloat16"
    assert choose_dtype("cpu", "float32") == "float32"
    monkeypatch.setenv("GEOLIBRE_ML_SAM3_DTYPE", "bf16")
    assert choose_dtype("cpu") == "bfloat16"
    monkeypatch.setenv("GEOLIBRE_ML_SAM3_DTYPE", "float8")
    with pytest.raises(ModelUnavailable, match="float32, bfloat16 or auto"):
        choose_dtype("cpu")
    monkeypatch.setenv("GEOLIBRE_ML_SAM3_DTYPE", "bfloat16")
    half = Sam3Backend(str(sam3_checkpoint), device="cpu")
    assert half.detector.dtype == torch.bfloat16
    answer = half.segment(chip_of(picture()), TextPrompt("water", 0.0))
    assert all(0.0 <= o.score <= 1.0 for o in answer)


def test_a_detector_only_checkpoint_answers_text_and_says_why_not_points(
    tmp_path: Path,
) -> None:
    from geolibre_ml.segment.errors import UnsupportedPrompt
    from support.sam3_checkpoint import build_checkpoint

    folder = build_checkpoint(tmp_path / "detector", tracker=False)
    backend = Sam3Backend(str(folder), device="cpu", dtype="float32")
    assert backend.tracker is None
    chip = chip_of(picture())
    assert backend.segment(chip, TextPrompt("water", 0.0)).count > 0
    for prompt in (
        PointBoxPrompt(points=((10.0, 10.0),), labels=(1,)),
        AutomaticPrompt(),
    ):
        with pytest.raises(UnsupportedPrompt, match="detector only"):
            backend.check_prompt(prompt)


# -- one image encoder ---------------------------------------------------------------


def test_the_tracker_runs_on_the_detectors_backbone_and_gets_its_own_embeddings(
    model: Sam3Backend, sam3_checkpoint: Path
) -> None:
    from transformers import Sam3TrackerModel

    assert model.tracker.vision_encoder.backbone is model.detector.vision_encoder.backbone
    ids = {id(p) for p in model.detector.parameters()}
    own = [p for p in model.tracker.parameters() if id(p) not in ids]
    backbone = sum(p.numel() for p in model.detector.vision_encoder.backbone.parameters())
    total = sum(p.numel() for p in model.tracker.parameters())
    assert sum(p.numel() for p in own) == total - backbone  # the backbone is held once

    image = picture()
    features = model.prepare(chip_of(image))
    shared = model._tracker_embeddings(features)
    alone = Sam3TrackerModel.from_pretrained(sam3_checkpoint, dtype=torch.float32).eval()
    pixels = model.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    expected = alone.get_image_embeddings(pixels)
    assert len(shared) == len(expected)
    for ours, theirs in zip(shared, expected, strict=True):
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_a_second_prompt_on_an_image_does_not_run_the_vision_encoder(
    model: Sam3Backend, tmp_path: Path
) -> None:
    path = write_raster(tmp_path / "scene.tif", np.moveaxis(picture(60, 80), -1, 0))
    cache = PreparedCache(64 << 20)
    vision = Calls(model.detector.vision_encoder.backbone)
    text = Calls(model.detector.text_encoder)
    try:
        prompts = [
            TextPrompt("water", 0.0),
            TextPrompt("water", 0.3),
            TextPrompt("trees", 0.0),
            PointBoxPrompt(points=((10.0, 10.0),), labels=(1,)),
            PointBoxPrompt(boxes=((5.0, 5.0, 40.0, 30.0),), box_mode="object"),
        ]
        reused = []
        for prompt in prompts:
            result = segment_raster(path, prompt, model, cache=cache, content_key="scene")
            reused.append(result.reused_windows)
        assert vision.count == 1
        assert reused == [0, 1, 1, 1, 1]
        model._text_cache.clear()
        text.count = 0
        segment_raster(path, TextPrompt("roads", 0.0), model, cache=cache, content_key="scene")
        segment_raster(path, TextPrompt("roads", 0.5), model, cache=cache, content_key="scene")
        assert text.count == 1  # the concept's embedding is cached too
    finally:
        vision.close()
        text.close()


def test_the_feature_cache_evicts_the_least_recently_used_image(
    model: Sam3Backend, tmp_path: Path
) -> None:
    first = write_raster(tmp_path / "a.tif", np.moveaxis(picture(60, 80, 1), -1, 0))
    second = write_raster(tmp_path / "b.tif", np.moveaxis(picture(60, 80, 2), -1, 0))
    one_image = model.prepare(chip_of(picture(60, 80))).nbytes + 60 * 80
    cache = PreparedCache(int(one_image * 1.5))  # room for one image's features
    vision = Calls(model.detector.vision_encoder.backbone)
    try:
        for path, key in ((first, "a"), (second, "b"), (first, "a")):
            segment_raster(path, TextPrompt("water", 0.0), model, cache=cache, content_key=key)
        assert vision.count == 3  # "a" was evicted by "b" and encoded again
    finally:
        vision.close()


def test_several_images_are_encoded_in_one_batch_like_one_at_a_time(model: Sam3Backend) -> None:
    chips = [chip_of(picture(seed=s)) for s in (1, 2, 3)]
    vision = Calls(model.detector.vision_encoder.backbone)
    try:
        batched = model.prepare_batch(chips)
        assert vision.count == -(-len(chips) // model.batch_size)
    finally:
        vision.close()
    for chip, features in zip(chips, batched, strict=True):
        alone = model.prepare(chip)
        for a, b in zip(alone.fpn, features.fpn, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# -- text ----------------------------------------------------------------------------


def _reference_instances(model: Sam3Backend, image: np.ndarray, text: str) -> list[dict]:
    """transformers' own pipeline (processor, model, post-processing), every query."""
    inputs = model.processor(images=image, text=text, return_tensors="pt")
    with torch.inference_mode():
        outputs = model.detector(**inputs)
    return model.processor.post_process_instance_segmentation(
        outputs, threshold=-1.0, mask_threshold=0.5, target_sizes=[image.shape[:2]]
    )[0]


def test_confidence_threshold_zero_keeps_every_query_and_one_keeps_none(
    model: Sam3Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = picture()
    features = model.prepare(chip_of(image))
    monkeypatch.setattr(model, "duplicate_iou", 1.0)  # keep duplicates: count queries
    reference = _reference_instances(model, image, "water")
    masks = reference["masks"].numpy().astype(bool)
    queries = model.detector.config.detr_decoder_config.num_queries
    assert len(masks) == queries
    every = model.run(features, TextPrompt("water", 0.0))
    assert every.count == int(sum(m.any() for m in masks))
    ours = sorted(o.score for o in every)
    theirs = sorted(float(s) for s, m in zip(reference["scores"], masks, strict=True) if m.any())
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert model.run(features, TextPrompt("water", 1.0)).count == 0
    middle = float(np.median(ours))
    kept = model.run(features, TextPrompt("water", middle))
    assert kept.count == sum(s > middle for s in ours)
    assert all(o.score > middle for o in kept)


def test_masks_are_full_resolution_crops_with_scores_and_the_concept(model: Sam3Backend) -> None:
    image = picture(70, 150)
    answer = model.segment(chip_of(image), TextPrompt("water", 0.0))
    assert answer.count > 0
    for o in answer:
        c0, r0, c1, r1 = o.box
        assert 0 <= c0 < c1 <= 150 and 0 <= r0 < r1 <= 70
        assert o.mask.shape == (r1 - r0, c1 - c0) and o.mask.dtype == bool
        assert o.mask[0].any() and o.mask[-1].any() and o.mask[:, 0].any()
        assert o.origin.prompt == "water"


def test_overlapping_duplicates_are_removed(model: Sam3Backend, monkeypatch) -> None:
    features = model.prepare(chip_of(picture()))
    monkeypatch.setattr(model, "duplicate_iou", 1.0)
    every = model.run(features, TextPrompt("water", 0.0))
    monkeypatch.setattr(model, "duplicate_iou", 0.7)
    unique = model.run(features, TextPrompt("water", 0.0))
    assert unique.count <= every.count
    boxes = torch.tensor([o.box for o in unique], dtype=torch.float32)
    from torchvision.ops import box_iou

    iou = box_iou(boxes, boxes).fill_diagonal_(0)
    # What is left overlaps less than the duplicate threshold (boxes here are the
    # masks' tight boxes, close to the detector's own).
    assert unique.count == every.count or float(iou.max()) < 0.95


def test_exemplar_boxes_prompt_the_detector(model: Sam3Backend) -> None:
    features = model.prepare(chip_of(picture()))
    detector = model.detector
    plain = model._exemplars(features.shape, [], [], 1)
    assert plain == {}
    positive = model._exemplars(features.shape, [(13.0, 9.0, 65.0, 45.0)], [1], 2)
    boxes = positive["input_boxes"]
    assert boxes.shape == (2, 1, 4)
    # Normalised (cx, cy, w, h) of the box on the 130 x 90 chip.
    torch.testing.assert_close(
        boxes[0, 0].float(), torch.tensor([39 / 130, 27 / 90, 52 / 130, 36 / 90])
    )
    assert detector is model.detector
    a = model._concepts(features, ["water"], 0.0, (), ())
    b = model._concepts(features, ["water"], 0.0, ((13.0, 9.0, 65.0, 45.0),), (1,))
    c = model._concepts(features, ["water"], 0.0, ((13.0, 9.0, 65.0, 45.0),), (0,))
    scores = [sorted(o.score for o in s) for s in (a, b, c)]
    assert scores[0] != scores[1] and scores[1] != scores[2]


# -- predict and automatic -------------------------------------------------------------


def test_one_object_per_box_and_three_candidates_with_multimask(model: Sam3Backend) -> None:
    features = model.prepare(chip_of(picture()))
    boxes = ((5.0, 5.0, 60.0, 40.0), (70.0, 30.0, 120.0, 80.0))
    single = model.run(features, PointBoxPrompt(boxes=boxes, box_mode="object"))
    assert {o.origin.box for o in single} <= set(boxes)
    assert all(o.origin.candidate == 0 for o in single)
    several = model.run(
        features, PointBoxPrompt(boxes=boxes, box_mode="object", multimask_output=True)
    )
    for box in boxes:
        mine = [o for o in several if o.origin.box == box]
        assert [o.origin.candidate for o in mine] == sorted(o.origin.candidate for o in mine)
        assert [o.score for o in mine] == sorted((o.score for o in mine), reverse=True)
        assert len(mine) <= 3


def test_points_inside_a_box_refine_it_and_loose_points_make_an_object(
    model: Sam3Backend,
) -> None:
    features = model.prepare(chip_of(picture()))
    box = (5.0, 5.0, 60.0, 40.0)
    low_res, _ = model._track(
        features,
        None,
        None,
        model._to_input(features.shape, np.asarray([box], np.float32)),
        multimask=False,
    )
    refined, _ = model._track(
        features,
        model._to_input(features.shape, np.asarray([[[20.0, 20.0]]], np.float32)),
        torch.tensor([[0]]),
        model._to_input(features.shape, np.asarray([box], np.float32)),
        multimask=False,
    )
    assert not torch.equal(low_res, refined)
    answer = model.run(
        features,
        PointBoxPrompt(
            points=((20.0, 20.0), (100.0, 60.0)), labels=(0, 1), boxes=(box,), box_mode="object"
        ),
    )
    origins = {(o.origin.box, o.origin.point) for o in answer}
    assert origins <= {(box, None), (None, (100.0, 60.0))}


def test_boxes_find_similar_objects_by_default_as_samgeo_api_does(model: Sam3Backend) -> None:
    features = model.prepare(chip_of(picture()))
    box = (5.0, 5.0, 60.0, 40.0)
    similar = model.run(features, PointBoxPrompt(boxes=(box,)))
    # The detector answered, from the boxes together; the tracker, one object per box.
    assert all(o.origin.box is None and o.origin.prompt is None for o in similar)
    obj = model.run(features, PointBoxPrompt(boxes=(box,), box_mode="object"))
    assert obj.count and all(o.origin.box == box for o in obj)


def test_automatic_honours_its_thresholds(model: Sam3Backend) -> None:
    features = model.prepare(chip_of(picture()))
    loose = AutomaticPrompt(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    found = model.run(features, loose)
    assert 0 < found.count <= 3 * 4 * 4
    strict = AutomaticPrompt(points_per_side=4, pred_iou_thresh=1.01, stability_score_thresh=0.0)
    assert model.run(features, strict).count == 0
    stable = AutomaticPrompt(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=1.01)
    assert model.run(features, stable).count == 0


# -- through the pipeline --------------------------------------------------------------


def test_text_features_are_georeferenced_with_scores(model: Sam3Backend, tmp_path: Path) -> None:
    transform = from_origin(500000.0, 4000000.0, 0.5, 0.5)
    path = write_raster(
        tmp_path / "ortho.tif", np.moveaxis(picture(80, 120), -1, 0), transform=transform
    )
    result = segment_raster(path, TextPrompt("water", 0.0), model)
    features = result.features
    assert len(features.geometries) > 0
    assert features.crs == UTM_CRS
    for geometry, props in zip(features.geometries, features.properties, strict=True):
        x0, y0, x1, y1 = geometry.bounds
        assert 500000.0 <= x0 < x1 <= 500060.0 and 3999960.0 <= y0 < y1 <= 4000000.0
        assert props["model"] == "sam3" and props["prompt"] == "water"
        assert 0.0 <= props["score"] <= 1.0
        assert props["area_m2"] > 0


def test_clearing_the_manager_frees_the_model(sam3_checkpoint: Path, monkeypatch) -> None:
    monkeypatch.setenv("GEOLIBRE_ML_SAM3_MODEL", str(sam3_checkpoint))
    manager = ModelManager(device="cpu")
    backend = manager.get("sam3", str(sam3_checkpoint))
    assert manager.loaded() == [["sam3", str(sam3_checkpoint)]]
    manager.clear()
    assert manager.loaded() == []
    assert backend.detector is None and backend.tracker is None


def test_masks_are_upsampled_a_few_at_a_time_with_the_same_result(
    model: Sam3Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geolibre_ml.segment.backends import sam3

    features = model.prepare(chip_of(picture()))
    monkeypatch.setattr(model, "duplicate_iou", 1.0)
    whole = model.run(features, TextPrompt("water", 0.0))
    monkeypatch.setattr(sam3, "UPSAMPLE_BUDGET", 90 * 130)  # one full-size mask per chunk
    chunked = model.run(features, TextPrompt("water", 0.0))
    assert whole.count == chunked.count > 1
    for a, b in zip(whole, chunked, strict=True):
        assert a.box == b.box and a.score == b.score
        np.testing.assert_array_equal(a.mask, b.mask)


def test_several_concepts_in_one_pass_score_as_each_alone(model: Sam3Backend, monkeypatch) -> None:
    features = model.prepare(chip_of(picture()))
    monkeypatch.setattr(model, "batch_size", 3)
    text = Calls(model.detector.detr_decoder)
    try:
        together = model.run(features, TextPrompt("water", 0.0, others=("trees", "roads")))
        assert text.count == 1  # three concepts, one batched decoder pass
    finally:
        text.close()
    assert {o.origin.prompt for o in together} <= {"water", "trees", "roads"}
    for concept in ("water", "trees", "roads"):
        alone = model.run(features, TextPrompt(concept, 0.0))
        mine = [o for o in together if o.origin.prompt == concept]
        np.testing.assert_allclose(
            sorted(o.score for o in mine), sorted(o.score for o in alone), rtol=1e-4, atol=1e-6
        )


def test_a_raster_larger_than_the_input_is_segmented_in_tiles_batched(
    model: Sam3Backend, tmp_path: Path, monkeypatch
) -> None:
    # 112 px tiles overlapping by 14: 3 x 3 tiles over 300 x 250, two per encoder pass.
    path = write_raster(tmp_path / "wide.tif", np.moveaxis(picture(250, 300, seed=4), -1, 0))
    encoded: list[list[tuple[int, int]]] = []
    batch = model.prepare_batch

    def counting(chips):
        encoded.append([chip.shape for chip in chips])
        return batch(chips)

    monkeypatch.setattr(model, "prepare_batch", counting)
    result = segment_raster(path, TextPrompt("water", 0.0), model)
    assert [len(b) for b in encoded] == [2, 2, 2, 2, 1]
    assert {shape for b in encoded for shape in b} == {(112, 112)}  # native size, not squeezed
    geometries = result.objects.pixel_geometries()
    assert len(geometries) > 0 and shapely.is_valid(geometries).all()
    assert shapely.box(0, 0, 300, 250).contains(shapely.union_all(geometries))
    # An instance seen by two tiles in their overlap is kept once.
    tree = shapely.STRtree(geometries)
    left, right = tree.query(geometries, predicate="intersects")
    pairs = left < right
    inter = shapely.area(shapely.intersection(geometries[left[pairs]], geometries[right[pairs]]))
    union = shapely.area(shapely.union(geometries[left[pairs]], geometries[right[pairs]]))
    assert not (inter / union > 0.95).any()

    encoded.clear()
    box = PointBoxPrompt(boxes=((150.0, 120.0, 190.0, 160.0),), box_mode="object")
    assert len(segment_raster(path, box, model).features) == 1
    assert encoded == [[(112, 112)]]  # only the tile that holds the box


def test_exemplar_boxes_go_to_the_tiles_that_hold_them(model: Sam3Backend, tmp_path: Path) -> None:
    path = write_raster(tmp_path / "wide.tif", np.moveaxis(picture(250, 300, seed=5), -1, 0))
    prompt = TextPrompt("water", 0.0, boxes=((20.0, 20.0, 40.0, 40.0), (90.0, 20.0, 120.0, 40.0)))
    with RasterSource(path) as src:
        run = plan_run(src, prompt, model)
    boxes = [part.boxes for part in run.prompts]
    assert len(boxes) == 9  # every tile answers the text
    # Tiles start at 0, 98 and 188: the first box lies in the first tile only, the second
    # (x 90 to 120) in no tile whole, so it prompts nowhere rather than cut in two.
    assert boxes[0] == ((20.0, 20.0, 40.0, 40.0),)
    assert all(b == () for b in boxes[1:])
    segment_raster(path, prompt, model)  # and the run goes through, exemplar and all
