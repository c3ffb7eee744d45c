"""Superpixels: a fine over-segmentation that follows the image's edges.

Markers are placed on a regular grid, each at the point of least colour gradient of
its cell (so that no marker sits on an edge, as in SLIC's seed perturbation), and
OpenCV's marker-controlled watershed (Meyer's flooding algorithm, Meyer 1992; Beucher
and Meyer 1993) grows them over a lightly smoothed CIELAB image until they meet on
colour edges. This is a few times faster than SLIC or Felzenszwalb's algorithm on
the full pixel grid, and every superpixel is one 4-connected piece.

Pixels that are not valid (nodata) are flooded by a marker of their own and never
join a superpixel.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from skimage import measure

from ..checkpoints import checkpoint
from .labels import STRIP_ROWS, interior_counts, label_sums

#: Gaussian smoothing (pixels) of the image whose gradient places the markers; it
#: suppresses sensor noise and fine texture (crop rows, leaves), so that no marker
#: sits on an edge.
SMOOTHING_SIGMA = 2.0
#: Gaussian smoothing (pixels) of the image the watershed floods. Less than
#: SMOOTHING_SIGMA: on an image smoothed by 2 pixels a strong edge is a ramp some
#: ten pixels wide, and the two floods met anywhere on it, up to three pixels off
#: the edge; at 1 pixel they meet on it.
FLOOD_SIGMA = 1.0


def lab_image(rgb: np.ndarray, sigma: float = SMOOTHING_SIGMA) -> np.ndarray:
    """8-bit CIELAB of ``rgb`` (OpenCV's scaling: L* x 2.55, a* + 128, b* + 128), smoothed."""
    smoothed = cv2.GaussianBlur(rgb, (0, 0), sigma) if sigma > 0 else rgb
    return cv2.cvtColor(smoothed, cv2.COLOR_RGB2LAB)


def gradient_magnitude(lab: np.ndarray, factor: int = 2, smoothing: float = 0.0) -> np.ndarray:
    """Colour gradient (CIELAB units per pixel) on a grid ``factor`` times coarser.

    ``smoothing``: Gaussian sigma, in pixels of the coarser grid, applied there first.
    """
    height, width = lab.shape[:2]
    small = cv2.resize(
        lab,
        (max(width // factor, 1), max(height // factor, 1)),
        interpolation=cv2.INTER_AREA,
    ).astype(np.float32)
    small[..., 0] *= np.float32(100 / 255)
    if smoothing > 0:
        small = cv2.GaussianBlur(small, (0, 0), smoothing)
    out = np.zeros(small.shape[:2], dtype=np.float32)
    for channel in range(3):
        plane = np.ascontiguousarray(small[..., channel])
        gx = cv2.Sobel(plane, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
        gy = cv2.Sobel(plane, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
        out += gx * gx + gy * gy
    np.sqrt(out, out=out)
    return out


def grid_markers(
    gradient: np.ndarray, valid_small: np.ndarray, cell: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column (on the gradient's grid) of the least-gradient valid pixel of each cell."""
    height, width = gradient.shape
    masked = np.where(valid_small, gradient, np.inf).astype(np.float32)
    rows, cols = -(-height // cell), -(-width // cell)
    padded = np.full((rows * cell, cols * cell), np.inf, dtype=np.float32)
    padded[:height, :width] = masked
    blocks = padded.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(rows, cols, cell * cell)
    best = blocks.argmin(axis=-1)
    found = np.isfinite(np.take_along_axis(blocks, best[..., None], axis=-1)[..., 0])
    by, bx = np.nonzero(found)
    offset = best[by, bx]
    return by * cell + offset // cell, bx * cell + offset % cell


def superpixels(lab: np.ndarray, valid: np.ndarray, cell: int) -> tuple[np.ndarray, int]:
    """Watershed superpixels of about ``cell`` x ``cell`` pixels.

    Args:
        lab: ``(H, W, 3)`` uint8 CIELAB image smoothed by :data:`FLOOD_SIGMA`
            (``lab_image(rgb, FLOOD_SIGMA)``): the watershed floods it and its
            colours place ridge pixels; the markers are placed on its gradient
            after more smoothing, to :data:`SMOOTHING_SIGMA` in all.
        valid: ``(H, W)`` bool; invalid pixels get label 0.
        cell: grid spacing of the markers, in pixels (at least 2).

    Returns:
        ``(labels, n)``: int32 labels ``1..n`` (0 on invalid pixels) and ``n``.
    """
    height, width = valid.shape
    if min(height, width) < 3:
        # Too thin for the watershed, whose outer frame would be all there is: pad
        # with copies of the edge and cut the answer back.
        lab = cv2.copyMakeBorder(lab, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        padded = np.pad(valid, 1, mode="edge")
        labels, count = superpixels(lab, padded, cell)
        return np.ascontiguousarray(labels[1:-1, 1:-1]), count
    factor = 2 if min(height, width) >= 4 * cell else 1
    extra = np.sqrt(SMOOTHING_SIGMA**2 - FLOOD_SIGMA**2) / factor
    gradient = gradient_magnitude(lab, factor, smoothing=extra)
    valid_small = valid[::factor, ::factor][: gradient.shape[0], : gradient.shape[1]]
    ys, xs = grid_markers(gradient, valid_small, max(cell // factor, 1))
    del gradient, valid_small  # the flood, next, is the step that peaks in memory
    # OpenCV's watershed overwrites the image's outermost pixels, so markers sit
    # one pixel inside it.
    ys = np.clip(ys * factor, min(1, height - 1), max(height - 2, 0))
    xs = np.clip(xs * factor, min(1, width - 1), max(width - 2, 0))
    flat = np.unique(ys * width + xs)
    ys, xs = np.divmod(flat, width)
    keep = valid[ys, xs]
    ys, xs = ys[keep], xs[keep]
    count = len(ys)
    markers = np.zeros((height, width), dtype=np.int32)
    if count == 0:
        return markers, 0
    markers[ys, xs] = np.arange(1, count + 1, dtype=np.int32)
    nodata = count + 1
    markers[~valid] = nodata
    flood(_guard_nodata(lab, valid), markers)
    checkpoint()
    # The nodata marker may still have claimed a few valid pixels on its rim, and
    # a pixel walled in by ridges on all four sides is left unlabelled (0).
    markers[((markers == nodata) | (markers == 0)) & valid] = -1
    _assign_ridges(markers, count, lab)
    _dissolve_slivers(markers, count, lab)
    markers[(markers == nodata) | ~valid] = 0
    return markers, count


#: Rows either side of a seam that are flooded again from the strips' labels around them.
SEAM_BAND = 16
#: Rows around a seam where superpixels left in pieces are looked for.
SEAM_CHECK = 64
#: Fewest rows a strip of the parallel flood gets (smaller images flood in one piece).
FLOOD_MIN_ROWS = 1024


def flood(image: np.ndarray, markers: np.ndarray) -> None:
    """OpenCV's marker watershed on ``image``, in place on ``markers``, strips in parallel.

    OpenCV's watershed runs on one core and releases the GIL, so a tall image is
    flooded as horizontal strips, one thread each (up to the machine's cores, at most
    4), each strip in place on its rows of ``markers`` (no copy). A strip's edge is a
    wall to its flood, so a band of :data:`SEAM_BAND` rows either side of each seam
    is then flooded again, seeded by the strips' labels around it and by the markers
    inside it: superpixels meet there along the image's edges like anywhere else,
    never along the straight seam. Any superpixel the band leaves in two pieces keeps
    its largest; the rest becomes ridge, handed to neighbours by colour later.
    """
    height = markers.shape[0]
    strips = min(os.cpu_count() or 1, 4, height // FLOOD_MIN_ROWS)
    if strips < 2:
        cv2.watershed(image, markers)
        return
    edges = [round(i * height / strips) for i in range(strips + 1)]
    bands = [(edge - SEAM_BAND, edge + SEAM_BAND) for edge in edges[1:-1]]
    seeds = [markers[lo:hi].copy() for lo, hi in bands]

    def run(rows: tuple[int, int]) -> None:
        lo, hi = rows
        cv2.watershed(np.ascontiguousarray(image[lo:hi]), markers[lo:hi])

    with ThreadPoolExecutor(strips) as pool:
        list(pool.map(run, itertools.pairwise(edges)))
    for (lo, hi), seed in zip(bands, seeds, strict=True):
        # Rows [lo, hi) are flooded again; the row above and below seed them, and one
        # more row each side is the frame OpenCV overwrites.
        band = markers[lo - 2 : hi + 2].copy()
        band[2:-2] = seed
        cv2.watershed(np.ascontiguousarray(image[lo - 2 : hi + 2]), band)
        markers[lo:hi] = band[2:-2]
        _split_pieces_to_ridges(markers[max(lo - SEAM_CHECK, 0) : hi + SEAM_CHECK])


def _split_pieces_to_ridges(markers: np.ndarray) -> None:
    """Make every superpixel of ``markers`` (a view around a seam) one 4-connected piece.

    Where the re-flooded band did not join a superpixel's part above the seam to its
    part below, every piece but the largest becomes ridge (-1), which
    :func:`_assign_ridges` then hands to the neighbours of closest colour, as it does
    the watershed's own lines.
    """
    pieces = measure.label(markers, background=-1, connectivity=1)
    found = pieces > 0
    label_of = np.zeros(int(pieces.max()) + 1, dtype=np.int64)
    label_of[pieces[found]] = markers[found]
    sizes = np.bincount(pieces[found], minlength=len(label_of))
    # The largest piece of each label: sort pieces by (label, size) and take the last.
    order = np.lexsort((sizes[1:], label_of[1:])) + 1
    last = np.r_[label_of[order][1:] != label_of[order][:-1], True]
    keep = np.zeros(len(label_of), dtype=bool)
    keep[order[last]] = True
    keep[label_of <= 0] = True
    markers[found & ~keep[pieces]] = -1


def _guard_nodata(lab: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The watershed's image with nodata pixels next to valid ones recoloured.

    OpenCV's watershed floods a pixel from the neighbour whose colour is closest;
    the nodata marker is flooded from too. Giving its rim the colour of its valid
    neighbours shifted by half the range makes it the last candidate for them.
    """
    if valid.all():
        return lab
    kernel = np.ones((3, 3), np.uint8)
    rim = (cv2.dilate(valid.view(np.uint8), kernel) > 0) & ~valid
    nearby = cv2.dilate(np.where(valid[..., None], lab, 0).astype(np.uint8), kernel)
    out = lab.copy()
    out[rim] = nearby[rim] ^ np.uint8(128)
    return out


def _dissolve_slivers(markers: np.ndarray, count: int, lab: np.ndarray) -> None:
    """Hand the pixels of sliver superpixels to their neighbours, by colour, in place.

    A marker that lands next to an edge can flood a strip two or three pixels wide
    along it, sometimes a hundred pixels long, half on each side: a superpixel with
    (almost) no interior pixel, whose mean colour lies between the two objects, so
    that it survives as a region of its own and cuts a pixel row off the object. Its
    pixels go to the adjacent superpixels as ridge pixels do, each to the neighbour
    of closest colour.
    """
    n = count + 2
    inner = interior_counts(markers, n)
    area = label_sums(markers, None, n)
    sliver = (inner < np.maximum(SLIVER_INTERIOR_PIXELS, SLIVER_INTERIOR_SHARE * area)) & (area > 0)
    sliver[0] = sliver[count + 1] = False
    if not sliver.any():
        return
    for top in range(0, markers.shape[0], STRIP_ROWS):
        strip = markers[top : top + STRIP_ROWS]
        strip[sliver[strip]] = -1
    _assign_ridges(markers, count, lab)


#: A superpixel with fewer interior pixels (pixels whose four neighbours share its
#: label) than this, or than this share of its pixels, is a sliver along an edge
#: (see :func:`_dissolve_slivers`). A compact 12 x 12 superpixel has 69 % interior
#: pixels, a strip three pixels wide a third, one two pixels wide none.
SLIVER_INTERIOR_PIXELS = 4
SLIVER_INTERIOR_SHARE = 0.25


def _assign_ridges(markers: np.ndarray, count: int, lab: np.ndarray) -> None:
    """Give each watershed ridge pixel (-1) the label of its most similar 4-neighbour, in place.

    OpenCV's watershed leaves a one-pixel ridge between basins, and on a sharp edge
    that ridge is the outermost pixel row of one object or the other. Giving it the
    label of the neighbour whose colour (in ``lab``, lightly smoothed) is closest to
    its own puts it on its side of the edge: a fixed choice (say, always the left
    neighbour) shifts every left or top outline by one pixel, and the pixels of
    the object across it then colour the boundary superpixels' statistics.

    Ridges are one pixel wide, so a neighbour nearly always holds a superpixel; the
    few that do not are resolved by the next pass. Pixels no superpixel can reach
    become nodata.
    """
    flat = markers.ravel()
    pixels = np.flatnonzero(flat == -1)
    distances = _neighbour_distances(lab, pixels)
    todo = np.arange(pixels.size)
    while todo.size:
        left = []
        for start in range(0, todo.size, RIDGE_CHUNK):
            chunk = todo[start : start + RIDGE_CHUNK]
            left.append(_assign_chunk(flat, pixels, distances, chunk, markers.shape[1], count))
        remaining = np.concatenate(left)
        if remaining.size == todo.size:
            break
        todo = remaining
    flat[pixels[todo]] = count + 1


#: Ridge pixels handled at once (bounds the temporary index arrays).
RIDGE_CHUNK = 1 << 18


def _neighbour_distances(lab: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Colour distance from each of ``pixels`` (flat indexes, sorted) to its 4-neighbours.

    Rows: left, up, right, down. The distance is the largest difference over the
    channels, as in OpenCV's watershed; 255 for neighbours off the image. Computed
    with OpenCV on strips of rows and read at ``pixels`` only.

    Returns:
        ``(4, len(pixels))`` uint8.
    """
    height, width = lab.shape[:2]
    out = np.empty((4, pixels.size), dtype=np.uint8)
    edges = np.arange(0, height + STRIP_ROWS, STRIP_ROWS).clip(max=height) * width
    bounds = np.searchsorted(pixels, edges)
    for strip, top in enumerate(range(0, height, STRIP_ROWS)):
        first, last = bounds[strip], bounds[strip + 1]
        if first == last:
            continue
        bottom = min(top + STRIP_ROWS, height)
        lo, hi = max(top - 1, 0), min(bottom + 1, height)
        block = lab[lo:hi]
        # across[y, x]: distance between x - 1 and x; down[y, x]: between y - 1 and y
        # (block rows, one row of context each side). The padding of 255 stands for
        # neighbours off the image.
        across = np.pad(
            _channel_max(cv2.absdiff(block[:, 1:], block[:, :-1])),
            ((0, 0), (1, 1)),
            constant_values=255,
        )
        down = np.pad(
            _channel_max(cv2.absdiff(block[1:], block[:-1])),
            ((1 if lo == top else 0, 1 if hi == bottom else 0), (0, 0)),
            constant_values=255,
        )
        y, x = np.divmod(pixels[first:last], width)
        y -= lo
        yd = y if lo == top else y - 1
        out[0, first:last] = across[y, x]
        out[1, first:last] = down[yd, x]
        out[2, first:last] = across[y, x + 1]
        out[3, first:last] = down[yd + 1, x]
    return out


def _channel_max(image: np.ndarray) -> np.ndarray:
    """The largest of the channels of an ``(h, w, c)`` image, per pixel."""
    channels = cv2.split(image)
    out = channels[0]
    for channel in channels[1:]:
        out = cv2.max(out, channel)
    return out


def _assign_chunk(
    flat: np.ndarray,
    pixels: np.ndarray,
    distances: np.ndarray,
    chunk: np.ndarray,
    width: int,
    count: int,
) -> np.ndarray:
    """Assign the ridge pixels ``pixels[chunk]`` that have a labelled neighbour.

    Each takes the label of the labelled 4-neighbour whose colour is closest to its
    own (``distances``). All pixels of the chunk read the labels as they were before
    it, so the result does not depend on the order in which ridge pixels are visited.

    Returns:
        The entries of ``chunk`` left unassigned (no labelled neighbour yet).
    """
    where = pixels[chunk]
    column = where % width
    last = flat.size - 1
    best = np.full(chunk.size, 256, dtype=np.int16)
    label = np.zeros(chunk.size, dtype=np.int32)
    for j, (step, ok) in enumerate(
        (
            (-1, column > 0),
            (-width, where >= width),
            (1, column < width - 1),
            (width, where < flat.size - width),
        )
    ):
        # Whole-chunk operations (no index lists): off-image neighbours are read
        # clipped and then ignored.
        source = flat[np.clip(where + step, 0, last)]
        distance = distances[j][chunk]
        closer = ok & (source > 0) & (source <= count) & (distance < best)
        np.copyto(best, distance, where=closer)
        np.copyto(label, source, where=closer)
    done = label > 0
    flat[where[done]] = label[done]
    return chunk[~done]
