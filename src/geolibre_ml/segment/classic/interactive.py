"""Box and point prompts without a neural network.

**A box** is answered with GrabCut (Rother, Kolmogorov and Blake, "GrabCut: Interactive
Foreground Extraction using Iterated Graph Cuts", SIGGRAPH 2004; OpenCV's
implementation): colour models of the object and of its surroundings are fitted
inside and around the box and a graph cut separates them, several times over. It runs
on a crop around the box, reduced to at most :data:`GRABCUT_MAX_SIDE` pixels; when it
was reduced, the boundary is refined at full resolution by a marker-controlled
watershed in a thin band around it. The object never leaves its box: the largest
4-connected piece inside the box is kept. Points inside a box refine it: foreground
points are seeded as certain object, background points as certain background.

**Points** outside every box form one object of their own: the automatic regions
(:mod:`.regions`) are computed in a window around the points, and the object is the
union of the regions holding the foreground points. The window grows until that
object no longer touches its border (or covers the image). If a background point
falls inside the object, the region holding it is split by a marker-controlled
watershed (scikit-image's, confined to that region) between the foreground and
background points, so the background points always end up outside.

**Scores** are the colour separability of the object from its surroundings (the
rest of the crop or window): ``1 - BC``, where ``BC`` is the Bhattacharyya
coefficient of the two colour histograms (CIELAB, 8 bins per axis). 0 means the
object has the same colours as what surrounds it, 1 that they share none.

Prompt coordinates are chip pixels (x right, y down, (0, 0) the top-left corner of
the top-left pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np
from rasterio.windows import Window
from skimage.segmentation import watershed

from ..chip import ImageChip
from ..masks import MaskSet
from ..prompts import PointBoxPrompt
from .objects import minimum_mapping_unit
from .regions import segment_regions
from .superpixels import gradient_magnitude, lab_image

#: Longest side, in pixels, of the image GrabCut works on (larger crops are reduced).
GRABCUT_MAX_SIDE = 320
GRABCUT_ITERATIONS = 5
#: Margin around a box, as a fraction of its size, and at least this many pixels.
BOX_MARGIN_FRACTION = 0.25
BOX_MARGIN_PIXELS = 16
#: Smallest share of a box's valid pixels that GrabCut's object may cover; less is a
#: speck (a boat, a cloudlet) and the region under the box is answered instead.
SMALLEST_BOX_SHARE = 0.02
#: Radius, in pixels of the working image, of the seed drawn at each point.
SEED_RADIUS = 2
#: First window around points, in pixels; it doubles while the object touches it.
POINT_WINDOW = 384
#: Bins per CIELAB axis of the colour histograms behind the scores.
HISTOGRAM_BINS = 8


@dataclass(frozen=True)
class _Box:
    """A pixel rectangle ``[x0, x1) x [y0, y1)``."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def rows(self) -> slice:
        return slice(self.y0, self.y1)

    @property
    def cols(self) -> slice:
        return slice(self.x0, self.x1)

    def grow(self, margin_x: int, margin_y: int, height: int, width: int) -> _Box:
        return _Box(
            max(self.x0 - margin_x, 0),
            max(self.y0 - margin_y, 0),
            min(self.x1 + margin_x, width),
            min(self.y1 + margin_y, height),
        )

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1


def segment_prompt(chip: ImageChip, prompt: PointBoxPrompt) -> MaskSet:
    """One object per box, plus one for the points outside every box.

    Args:
        chip: the image.
        prompt: boxes ``(xmin, ymin, xmax, ymax)`` and points ``(x, y)`` with labels
            1 (foreground) or 0 (background), in chip pixels.

    Returns:
        The objects found, each with its colour-separability score; a prompt whose
        object cannot be found (e.g. a box over nodata) yields no object.
    """
    height, width = chip.shape
    labels = (
        prompt.labels if len(prompt.labels) == len(prompt.points) else (1,) * len(prompt.points)
    )
    points = [
        (min(max(x, 0.0), width - 1e-6), min(max(y, 0.0), height - 1e-6), label)
        for (x, y), label in zip(prompt.points, labels, strict=True)
    ]
    boxes = [_pixel_box(box, height, width) for box in prompt.boxes]
    masks: list[np.ndarray] = []
    scores: list[float] = []
    for box in boxes:
        inside = [p for p in points if box.contains(p[0], p[1])]
        found = _box_object(chip, box, inside)
        if found is not None:
            masks.append(found[0])
            scores.append(found[1])
    loose = [p for p in points if not any(box.contains(p[0], p[1]) for box in boxes)]
    if any(label == 1 for _, _, label in loose):
        found = _point_object(chip, loose)
        if found is not None:
            masks.append(found[0])
            scores.append(found[1])
    if not masks:
        return MaskSet.empty(chip.shape)
    return MaskSet.from_masks(masks, scores)


def _pixel_box(box: tuple[float, float, float, float], height: int, width: int) -> _Box:
    x0 = min(max(math.floor(box[0]), 0), width - 1)
    y0 = min(max(math.floor(box[1]), 0), height - 1)
    x1 = max(min(math.ceil(box[2]), width), x0 + 1)
    y1 = max(min(math.ceil(box[3]), height), y0 + 1)
    return _Box(x0, y0, x1, y1)


# -- boxes ------------------------------------------------------------------------------


def _box_object(
    chip: ImageChip, box: _Box, points: list[tuple[float, float, int]]
) -> tuple[np.ndarray, float] | None:
    height, width = chip.shape
    margin_x = max(BOX_MARGIN_PIXELS, round((box.x1 - box.x0) * BOX_MARGIN_FRACTION))
    margin_y = max(BOX_MARGIN_PIXELS, round((box.y1 - box.y0) * BOX_MARGIN_FRACTION))
    crop = box.grow(margin_x, margin_y, height, width)
    rgb = chip.rgb[crop.rows, crop.cols]
    valid = chip.valid[crop.rows, crop.cols]
    crop_h, crop_w = valid.shape
    in_box = np.zeros((crop_h, crop_w), dtype=bool)
    in_box[box.y0 - crop.y0 : box.y1 - crop.y0, box.x0 - crop.x0 : box.x1 - crop.x0] = True
    in_box &= valid
    if not in_box.any():
        return None

    factor = max(crop_h, crop_w) / GRABCUT_MAX_SIDE
    if factor > 1:
        size = (max(round(crop_w / factor), 1), max(round(crop_h / factor), 1))
        work = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        work_box = cv2.resize(in_box.view(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        work_valid = cv2.resize(valid.view(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    else:
        work, work_box, work_valid = rgb, in_box, valid
    scale_x = work.shape[1] / crop_w
    scale_y = work.shape[0] / crop_h

    mask = np.where(work_box & work_valid, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    for x, y, label in points:
        centre = (int((x - crop.x0) * scale_x), int((y - crop.y0) * scale_y))
        seed = cv2.GC_FGD if label == 1 else cv2.GC_BGD
        cv2.circle(mask, centre, SEED_RADIUS, int(seed), thickness=-1)
    mask[~work_box] = cv2.GC_BGD
    found = _grabcut(work, mask)
    if factor > 1 and found.any():
        found = _refine_upsampled(found, rgb, (crop_h, crop_w), factor)
    found &= in_box
    local = [(x - crop.x0, y - crop.y0, lab) for x, y, lab in points]
    found = _main_piece(found, local)
    if found is None or _is_speck(found, in_box, local):
        # GrabCut saw nothing different from the surroundings (a box inside a
        # uniform area), or only a speck in it (a boat, a cloudlet): the object is
        # then the region under the box's centre.
        found = _region_in_box(chip, crop, box, local)
    if found is None:
        return None
    _fill_holes(found, minimum_mapping_unit(chip.pixel_size_m))
    found &= valid
    score = separability(rgb, found, valid & ~found)
    full = np.zeros(chip.shape, dtype=bool)
    full[crop.rows, crop.cols] = found
    return full, score


def _is_speck(
    found: np.ndarray, in_box: np.ndarray, points: list[tuple[float, float, int]]
) -> bool:
    """Whether ``found`` is too small a share of its box to be what the box meant.

    A box drawn around an object is mostly object; a few pixels in a large box are
    noise GrabCut singled out. A foreground point on them says they are meant.
    """
    height, width = found.shape
    on_point = any(
        label == 1 and 0 <= int(y) < height and 0 <= int(x) < width and found[int(y), int(x)]
        for x, y, label in points
    )
    return not on_point and found.sum() < SMALLEST_BOX_SHARE * in_box.sum()


def _grabcut(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Run GrabCut on an RGB image from a seeded mask; the pixels it calls object."""
    if not ((mask == cv2.GC_BGD) | (mask == cv2.GC_PR_BGD)).any():
        # The box covers the whole image: let its outer rim stand for background.
        rim = max(2, round(0.05 * min(mask.shape)))
        ring = np.ones(mask.shape, dtype=bool)
        ring[rim:-rim, rim:-rim] = False
        mask[ring & (mask == cv2.GC_PR_FGD)] = cv2.GC_PR_BGD
    if not ((mask == cv2.GC_PR_FGD) | (mask == cv2.GC_FGD)).any():
        return np.zeros(mask.shape, dtype=bool)
    try:
        cv2.grabCut(
            cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
            mask,
            None,
            np.zeros((1, 65), np.float64),
            np.zeros((1, 65), np.float64),
            GRABCUT_ITERATIONS,
            cv2.GC_INIT_WITH_MASK,
        )
    except cv2.error:
        # GrabCut fits colour models to both classes and refuses when one of them
        # has too few pixels (tiny crops); the caller falls back to regions.
        return np.zeros(mask.shape, dtype=bool)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def _region_in_box(
    chip: ImageChip, crop: _Box, box: _Box, points: list[tuple[float, float, int]]
) -> np.ndarray | None:
    """The automatic region under the box's centre (or its foreground points), cut to the box."""
    labels = segment_regions(_sub_chip(chip, crop)).labels
    seeds = [(x, y) for x, y, label in points if label == 1] or [
        ((box.x0 + box.x1) / 2 - crop.x0, (box.y0 + box.y1) / 2 - crop.y0)
    ]
    chosen = {int(labels[int(y), int(x)]) for x, y in seeds} - {0}
    if not chosen:
        return None
    found = np.isin(labels, list(chosen))
    found[:, : box.x0 - crop.x0] = False
    found[:, box.x1 - crop.x0 :] = False
    found[: box.y0 - crop.y0] = False
    found[box.y1 - crop.y0 :] = False
    return _main_piece(found, points)


def _refine_upsampled(
    found: np.ndarray, rgb: np.ndarray, shape: tuple[int, int], factor: float
) -> np.ndarray:
    """Upsample a reduced mask and let a watershed place its boundary at full resolution."""
    height, width = shape
    up = cv2.resize(found.view(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    band = max(2, math.ceil(factor))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    inner = cv2.erode(up, kernel, borderType=cv2.BORDER_REPLICATE) > 0
    outer = cv2.dilate(up, kernel) > 0
    markers = np.zeros((height, width), dtype=np.int32)
    markers[inner] = 1
    markers[~outer] = 2
    if not inner.any():
        return up > 0
    cv2.watershed(lab_image(np.ascontiguousarray(rgb), 1.0), markers)
    out = markers == 1
    # Watershed ridges (-1) between object and background go to the object if the
    # reduced mask said so.
    out |= (markers == -1) & (up > 0)
    return out


def _main_piece(mask: np.ndarray, points: list[tuple[float, float, int]]) -> np.ndarray | None:
    """The 4-connected pieces holding foreground points, or else the largest piece."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S
    )
    if count <= 1:
        return None
    height, width = mask.shape
    wanted = {
        int(labels[int(y), int(x)])
        for x, y, label in points
        if label == 1 and 0 <= int(y) < height and 0 <= int(x) < width
    } - {0}
    if not wanted:
        wanted = {int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) + 1}
    keep = np.zeros(count, dtype=bool)
    keep[list(wanted)] = True
    return keep[labels]


def _fill_holes(mask: np.ndarray, max_pixels: int) -> None:
    """Fill, in place, enclosed background areas smaller than ``max_pixels``."""
    _, holes, stats, _ = cv2.connectedComponentsWithStats(
        (~mask).view(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    height, width = mask.shape
    left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    inside = (
        (left > 0)
        & (top > 0)
        & (left + stats[:, cv2.CC_STAT_WIDTH] < width)
        & (top + stats[:, cv2.CC_STAT_HEIGHT] < height)
    )
    small = inside & (stats[:, cv2.CC_STAT_AREA] < max_pixels)
    small[0] = False
    if small.any():
        mask |= small[holes]


# -- points -----------------------------------------------------------------------------


def _point_object(
    chip: ImageChip, points: list[tuple[float, float, int]]
) -> tuple[np.ndarray, float] | None:
    height, width = chip.shape
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    spread = max(max(xs) - min(xs), max(ys) - min(ys))
    side = max(POINT_WINDOW, int(2 * spread))
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    while True:
        window = _Box(
            max(int(cx - side / 2), 0),
            max(int(cy - side / 2), 0),
            min(int(cx + side / 2) + 1, width),
            min(int(cy + side / 2) + 1, height),
        )
        sub = _sub_chip(chip, window)
        labels = segment_regions(sub).labels
        local = [(x - window.x0, y - window.y0, label) for x, y, label in points]
        chosen = {int(labels[int(y), int(x)]) for x, y, label in local if label == 1} - {0}
        if not chosen:
            return None
        keep = np.zeros(int(labels.max()) + 1, dtype=bool)
        keep[list(chosen)] = True
        found = keep[labels]
        covers_image = window == _Box(0, 0, width, height)
        if covers_image or not _touches_border(found, window, height, width):
            break
        side *= 2
    found = _exclude_background(sub, labels, found, local)
    if not found.any():
        return None
    score = separability(sub.rgb, found, sub.valid & ~found)
    full = np.zeros(chip.shape, dtype=bool)
    full[window.rows, window.cols] = found
    return full, score


def _sub_chip(chip: ImageChip, box: _Box) -> ImageChip:
    return replace(
        chip,
        rgb=chip.rgb[box.rows, box.cols],
        valid=chip.valid[box.rows, box.cols],
        spectral={k: v[box.rows, box.cols] for k, v in chip.spectral.items()},
        window=Window(
            chip.window.col_off + box.x0,
            chip.window.row_off + box.y0,
            box.x1 - box.x0,
            box.y1 - box.y0,
        ),
    )


def _touches_border(mask: np.ndarray, window: _Box, height: int, width: int) -> bool:
    """True when the object reaches a window edge that is not the image's edge."""
    return bool(
        (window.y0 > 0 and mask[0].any())
        or (window.y1 < height and mask[-1].any())
        or (window.x0 > 0 and mask[:, 0].any())
        or (window.x1 < width and mask[:, -1].any())
    )


def _exclude_background(
    sub: ImageChip, labels: np.ndarray, found: np.ndarray, points: list[tuple[float, float, int]]
) -> np.ndarray:
    """Split the regions of ``found`` that hold background points.

    Inside each such region (and only there) a marker-controlled watershed on the
    colour gradient grows the foreground and background points until they meet;
    the part reached from background points leaves the object.
    """
    out = found.copy()
    seeds = [(int(x), int(y), label) for x, y, label in points]
    split = {labels[y, x] for x, y, label in seeds if label == 0 and found[y, x]}
    for region in split:
        ys, xs = np.nonzero(labels == region)
        box = _Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        inside = labels[box.rows, box.cols] == region
        markers = np.zeros(inside.shape, dtype=np.int32)
        for x, y, label in seeds:
            if box.contains(x, y) and inside[y - box.y0, x - box.x0]:
                markers[y - box.y0, x - box.x0] = 1 if label == 1 else 2
        gradient = gradient_magnitude(lab_image(sub.rgb[box.rows, box.cols], 1.0), factor=1)
        flooded = watershed(gradient, markers, mask=inside)
        out[box.rows, box.cols] &= ~(flooded == 2)
    fg = [(x, y, 1) for x, y, label in points if label == 1]
    piece = _main_piece(out, fg)
    return piece if piece is not None else out


# -- scores -----------------------------------------------------------------------------


def separability(rgb: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> float:
    """``1 - Bhattacharyya coefficient`` of the CIELAB histograms of two pixel sets.

    Returns 1.0 when ``outside`` is empty (nothing to be confused with).
    """
    if not outside.any():
        return 1.0
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB)
    bins = (lab // (256 // HISTOGRAM_BINS)).astype(np.int32)
    index = (bins[..., 0] * HISTOGRAM_BINS + bins[..., 1]) * HISTOGRAM_BINS + bins[..., 2]
    size = HISTOGRAM_BINS**3
    p = np.bincount(index[inside], minlength=size).astype(np.float64)
    q = np.bincount(index[outside], minlength=size).astype(np.float64)
    p /= max(p.sum(), 1)
    q /= max(q.sum(), 1)
    coefficient = float(np.sqrt(p * q).sum())
    return float(min(max(1.0 - coefficient, 0.0), 1.0))
