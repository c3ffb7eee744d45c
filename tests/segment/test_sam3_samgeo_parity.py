"""Our SAM 3 text path gives what segment-geospatial's own SAM 3 code gives.

segment-geospatial 1.4.2's ``SamGeo3(backend="transformers")`` (its real
``samgeo/samgeo3.py``, installed without dependencies: see ``support/samgeo.py``) and
our ``Sam3Backend`` load the same tiny, randomly initialised checkpoint and answer the
same text prompt on the same image, in float32 on the CPU. With random weights the
masks mean nothing, but they are specific: a different resize, normalisation, text
padding, score formula, threshold comparison or mask upsampling would change them.

Two documented differences are accounted for, not hidden:

- ours removes overlapping duplicates of one object (box IoU above
  ``Sam3Backend.duplicate_iou``); samgeo keeps them. The exact comparison sets
  ``duplicate_iou = 1.0`` (keep every query); a second test checks that with the
  default, what we keep is a subset of samgeo's answer, unchanged.
- ours drops a query whose mask is empty at full resolution (it is no object);
  samgeo returns an empty mask. Empty masks are left out of samgeo's side.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from affine import Affine
from rasterio.windows import Window

from geolibre_ml.segment.chip import ImageChip
from geolibre_ml.segment.prompts import TextPrompt
from support.sam3_checkpoint import build_checkpoint
from support.samgeo import (
    load_samgeo3,
)

#: A non-square chip: the processor's resize to the model's square input and the
#: upsampling back to (HEIGHT, WIDTH) must agree on both axes.
HEIGHT, WIDTH = 150, 200
PROMPT = "tree"
#: Scores agree to this (both sides compute them in float32 from the same logits).
SCORE_TOLERANCE = 1e-5

Answer = list[tuple[float, np.ndarray]]


@pytest.fixture(scope="module")
def samgeo3(samgeo_dir: Path) -> ModuleType:
    """segment-geospatial's ``samgeo.samgeo3``, from the session's install (the one the
    sidecar's and the web app's compatibility tests use too)."""
    return load_samgeo3(samgeo_dir)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny SAM 3 checkpoint, named by ``GEOLIBRE_ML_SAM3_MODEL`` as users name theirs."""
    folder = build_checkpoint(tmp_path_factory.mktemp("sam3-tiny"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEOLIBRE_ML_SAM3_MODEL", str(folder))
        yield folder


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """``(HEIGHT, WIDTH, 3)`` uint8: gradients and stripes, so every query sees structure."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack(
        [cols * 255 // WIDTH, rows * 255 // HEIGHT, (rows + cols) % 64 * 4], axis=-1
    ).astype(np.uint8)


@pytest.fixture(scope="module")
def ours(checkpoint: Path) -> Iterator[object]:
    from geolibre_ml.segment.backends.sam3 import Sam3Backend

    backend = Sam3Backend(str(checkpoint), "cpu", dtype="float32")
    yield backend
    backend.close()


def samgeo_answer(
    samgeo3: ModuleType, checkpoint: Path, rgb: np.ndarray, threshold: float
) -> Answer:
    """``(score, full-size boolean mask)`` per object from ``SamGeo3``, best first."""
    sam = samgeo3.SamGeo3(
        backend="transformers",
        model_id=str(checkpoint),
        device="cpu",
        confidence_threshold=threshold,
    )
    sam.set_image(rgb)
    sam.generate_masks(PROMPT, quiet=True)
    answer = [(float(s), np.asarray(m) > 0) for s, m in zip(sam.scores, sam.masks, strict=True)]
    assert all(mask.shape == (HEIGHT, WIDTH) for _, mask in answer)
    return sorted(answer, key=lambda item: -item[0])


def our_answer(backend: object, rgb: np.ndarray, threshold: float) -> Answer:
    """``(score, full-size boolean mask)`` per object from our backend, best first."""
    chip = ImageChip(
        rgb=rgb,
        valid=np.ones((HEIGHT, WIDTH), bool),
        window=Window(0, 0, WIDTH, HEIGHT),
        transform=Affine.identity(),
    )
    answer = []
    for obj in backend.segment(chip, TextPrompt(PROMPT, threshold)):
        full = np.zeros((HEIGHT, WIDTH), bool)
        col0, row0, col1, row1 = obj.box
        full[row0:row1, col0:col1] = obj.mask
        answer.append((obj.score, full))
    return sorted(answer, key=lambda item: -item[0])


def assert_same(theirs: Answer, mine: Answer) -> None:
    theirs = [(s, m) for s, m in theirs if m.any()]  # an empty mask is no object
    assert len(mine) == len(theirs)
    for rank, ((their_score, their_mask), (my_score, my_mask)) in enumerate(
        zip(theirs, mine, strict=True)
    ):
        assert my_score == pytest.approx(their_score, abs=SCORE_TOLERANCE), rank
        differing = int((my_mask != their_mask).sum())
        assert differing == 0, f"object {rank}: {differing} pixels differ"


def test_every_query_same_masks_and_scores(
    samgeo3: ModuleType, checkpoint: Path, ours: object, image: np.ndarray
) -> None:
    theirs = samgeo_answer(samgeo3, checkpoint, image, 0.0)
    assert len(theirs) == ours.detector.config.detr_decoder_config.num_queries
    ours.duplicate_iou = 1.0  # keep every query, as samgeo does
    try:
        assert_same(theirs, our_answer(ours, image, 0.0))
    finally:
        del ours.duplicate_iou  # back to the class default


def test_threshold_keeps_the_same_objects(
    samgeo3: ModuleType, checkpoint: Path, ours: object, image: np.ndarray
) -> None:
    """A threshold equal to one query's score: samgeo keeps ``score > threshold``, and so
    must we (that query is dropped on both sides; ``>=`` would keep it)."""
    scores = [score for score, _ in samgeo_answer(samgeo3, checkpoint, image, 0.0)]
    threshold = float(np.float32(sorted(scores)[len(scores) // 2]))
    theirs = samgeo_answer(samgeo3, checkpoint, image, threshold)
    assert 0 < len(theirs) < len(scores)
    assert all(score > threshold for score, _ in theirs)
    ours.duplicate_iou = 1.0
    try:
        assert_same(theirs, our_answer(ours, image, threshold))
    finally:
        del ours.duplicate_iou


def test_duplicate_removal_only_removes(
    samgeo3: ModuleType, checkpoint: Path, ours: object, image: np.ndarray
) -> None:
    """With the default duplicate removal every object we keep is one of samgeo's, unchanged."""
    theirs = samgeo_answer(samgeo3, checkpoint, image, 0.0)
    mine = our_answer(ours, image, 0.0)
    assert mine
    for score, mask in mine:
        assert any(
            abs(score - their_score) <= SCORE_TOLERANCE and np.array_equal(mask, their_mask)
            for their_score, their_mask in theirs
        )
