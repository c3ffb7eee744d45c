"""Objects as a backend finds them: one mask per object, cropped to its box, with its score.

A run carries objects, not a flattened label image, from the backend to the answer:
overlapping instances (SAM 3), several masks per prompt (``multimask_output``) and
per-object boxes survive until an answer needs a label image, and only then are they
flattened (:meth:`ObjectSet.label_image`: where objects overlap, the highest score
wins, as in samgeo-api).

Masks are stored in one of two ways, whichever costs less:

- **cropped**: a boolean array the size of the object's box (models that answer one
  mask per object);
- **in a label layer**: non-overlapping objects that tile an area (classic regions,
  classes) share one ``int32`` label image, and each object is one value of it. A
  list of thousands of regions then costs no more than the label image itself.

Boxes are ``(col0, row0, col1, row1)`` in pixel edges of the grid the set lives on:
``col1``/``row1`` are exclusive. A window's objects are in window pixels until
:meth:`ObjectSet.shifted` moves them to raster pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

#: ``(col0, row0, col1, row1)``: pixel edges, the end exclusive.
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Origin:
    """What produced an object: the prompt element behind it.

    Attributes:
        prompt: the text prompt or concept (``"water"``), or None.
        point: the ``(x, y)`` point prompt, in raster pixels, or None.
        box: the ``(xmin, ymin, xmax, ymax)`` box prompt, in raster pixels, or None.
        candidate: index of the mask among several answers to one prompt
            (``multimask_output``), else 0.
    """

    prompt: str | None = None
    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    candidate: int = 0

    def shifted(self, row_off: int, col_off: int) -> Origin:
        """The same origin with its point and box moved by ``(row_off, col_off)`` pixels."""
        point = (self.point[0] + col_off, self.point[1] + row_off) if self.point else None
        box = self.box
        if box is not None:
            box = (box[0] + col_off, box[1] + row_off, box[2] + col_off, box[3] + row_off)
        return replace(self, point=point, box=box)


@dataclass(eq=False)
class LabelLayer:
    """A label image shared by non-overlapping objects (0 = no object).

    Attributes:
        labels: ``(H, W)`` int32.
        row_off, col_off: position of ``labels[0, 0]`` on the grid of the set.
    """

    labels: np.ndarray
    row_off: int = 0
    col_off: int = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the label image."""
        return int(self.labels.nbytes)


@dataclass(eq=False)
class MaskObject:
    """One object: its box, its mask within the box, its score and its origin.

    Attributes:
        box: ``(col0, row0, col1, row1)`` on the grid of the set that holds it.
        score: confidence in [0, 1]; NaN where the model gives none.
        origin: the prompt element that produced it.
        value: the number the run gives it once all windows are merged (the
            ``value`` of its feature and its label in label images); 0 before.
        mask: the boolean ``(box height, box width)`` mask of a cropped object, or
            None for a layer object.
        layer: the shared label image of a layer object, or None.
        label: the object's value in ``layer``.
    """

    box: Box
    score: float
    origin: Origin = field(default_factory=Origin)
    value: int = 0
    mask: np.ndarray | None = None
    layer: LabelLayer | None = None
    label: int = 0

    @property
    def pixels(self) -> np.ndarray:
        """The object's boolean mask within its box, ``(box height, box width)``."""
        if self.mask is not None:
            return self.mask
        assert self.layer is not None
        layer = self.layer
        c0, r0, c1, r1 = self.box
        rows = slice(r0 - layer.row_off, r1 - layer.row_off)
        cols = slice(c0 - layer.col_off, c1 - layer.col_off)
        return layer.labels[rows, cols] == self.label

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the box on the set's grid."""
        c0, r0, c1, r1 = self.box
        return slice(r0, r1), slice(c0, c1)


@dataclass
class ObjectSet:
    """The objects found in one window (or, once merged, in a whole run).

    Attributes:
        objects: in the order the backend gave them (for label layers: by value).
        layers: the label layers the layer objects refer to.
        shape: ``(height, width)`` of the grid the set was found on (a chip), when
            known; it makes the flattened views :attr:`labels` and :attr:`scores`.
    """

    objects: list[MaskObject] = field(default_factory=list)
    layers: list[LabelLayer] = field(default_factory=list)
    shape: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.objects)

    @property
    def count(self) -> int:
        """Number of objects."""
        return len(self.objects)

    @property
    def labels(self) -> np.ndarray:
        """The objects flattened on their grid (see :meth:`label_image`), numbered as
        :meth:`numbered` does: a convenience view for one chip's answer."""
        if self.shape is None:
            raise ValueError("this object set has no grid shape; use label_image(shape)")
        return self.numbered().label_image(self.shape)

    @property
    def scores(self) -> np.ndarray:
        """Score per value of :attr:`labels` (index 0 unused, NaN where none)."""
        numbered = self.numbered()
        out = np.full(numbered.top_value + 1, np.nan, dtype=np.float32)
        for o in numbered.objects:
            out[o.value] = o.score
        return out

    def __iter__(self):
        return iter(self.objects)

    @property
    def nbytes(self) -> int:
        """Bytes held by masks and label layers (what bounds the set's memory)."""
        cropped = sum(int(o.mask.nbytes) for o in self.objects if o.mask is not None)
        return cropped + sum(layer.nbytes for layer in self.layers)

    @classmethod
    def from_labels(
        cls,
        labels: np.ndarray,
        scores: Sequence[float] | np.ndarray,
        *,
        origin: Origin | None = None,
        origins: Sequence[Origin] | None = None,
    ) -> ObjectSet:
        """Objects from a label image of non-overlapping objects, sharing it as one layer.

        Args:
            labels: ``(H, W)`` integer labels, 0 (or negative) = no object.
            scores: ``scores[k]`` is the score of label ``k`` (``scores[0]`` unused);
                labels beyond it get NaN.
            origin: the origin of every object, or ``origins[k - 1]`` per label.
        """
        labels = np.asarray(labels)
        if labels.dtype != np.int32:
            labels = labels.astype(np.int32)
        layer = LabelLayer(labels)
        scores = np.asarray(scores, dtype=np.float64)
        objects = []
        for index, found in enumerate(_find_objects(labels), start=1):
            if found is None:
                continue
            rows, cols = found
            score = float(scores[index]) if index < len(scores) else float("nan")
            where = origins[index - 1] if origins is not None else origin or Origin()
            objects.append(
                MaskObject(
                    (cols.start, rows.start, cols.stop, rows.stop),
                    score,
                    where,
                    layer=layer,
                    label=index,
                )
            )
        return cls(objects, [layer] if objects else [], labels.shape)

    @classmethod
    def from_masks(
        cls,
        masks: Iterable[np.ndarray],
        scores: Iterable[float],
        origins: Iterable[Origin] | None = None,
        *,
        shape: tuple[int, int] | None = None,
    ) -> ObjectSet:
        """Objects from full-size boolean masks (one per object, overlaps allowed).

        Each mask is cropped to its bounding box; empty masks are dropped. ``shape``
        is the grid's (default: the masks').
        """
        masks, scores = list(masks), list(scores)
        origins = list(origins) if origins is not None else [Origin()] * len(masks)
        shape = shape or (masks[0].shape if masks else None)
        objects = []
        for mask, score, origin in zip(masks, scores, origins, strict=True):
            box = tight_box(mask)
            if box is None:
                continue
            c0, r0, c1, r1 = box
            crop = np.ascontiguousarray(mask[r0:r1, c0:c1], dtype=bool)
            objects.append(MaskObject(box, float(score), origin, mask=crop))
        return cls(objects, shape=shape)

    def cropped(self) -> ObjectSet:
        """The same objects, each with its own cropped mask instead of a shared layer.

        Two label layers of one grid cannot be joined as they are: their label values
        collide in numbering and their objects may overlap (a pixel that is water for
        one concept and wetland for another). Cropped objects have neither problem.
        Costs a mask per object, the size of its box.
        """
        if not self.layers:
            return self
        objects = [
            o
            if o.layer is None
            else replace(o, mask=np.ascontiguousarray(o.pixels), layer=None, label=0)
            for o in self.objects
        ]
        return ObjectSet(objects, [], self.shape)

    def shifted(self, row_off: int, col_off: int) -> ObjectSet:
        """The same objects with boxes (and layers) moved by ``(row_off, col_off)`` pixels."""
        if row_off == 0 and col_off == 0:
            return self
        moved = {
            id(layer): LabelLayer(layer.labels, layer.row_off + row_off, layer.col_off + col_off)
            for layer in self.layers
        }
        objects = [
            replace(
                o,
                box=shift_box(o.box, row_off, col_off),
                layer=moved[id(o.layer)] if o.layer is not None else None,
                origin=o.origin.shifted(row_off, col_off),
            )
            for o in self.objects
        ]
        return ObjectSet(objects, list(moved.values()))

    def without_invalid(self, valid: np.ndarray | None) -> ObjectSet:
        """The objects with pixels where ``valid`` is False (nodata) removed.

        Args:
            valid: ``(H, W)`` bool on the set's grid (True = data), or None.

        Objects left without pixels are dropped; boxes shrink to what is left.
        """
        if valid is None or valid.all():
            return self
        replaced: dict[int, LabelLayer] = {}
        for layer in self.layers:
            h, w = layer.labels.shape
            area = valid[layer.row_off : layer.row_off + h, layer.col_off : layer.col_off + w]
            replaced[id(layer)] = LabelLayer(
                np.where(area, layer.labels, 0).astype(np.int32, copy=False),
                layer.row_off,
                layer.col_off,
            )
        objects = []
        for o in self.objects:
            if o.layer is not None:
                objects.append(replace(o, layer=replaced[id(o.layer)]))
                continue
            rows, cols = o.slices
            mask = o.mask & valid[rows, cols]
            objects.append(replace(o, mask=mask))
        return ObjectSet(objects, list(replaced.values()), self.shape).tightened()

    def tightened(self) -> ObjectSet:
        """The objects with boxes shrunk to their pixels; objects with no pixel dropped."""
        spots: dict[int, list] = {id(layer): _find_objects(layer.labels) for layer in self.layers}
        kept = []
        for o in self.objects:
            if o.layer is not None:
                found = spots[id(o.layer)]
                spot = found[o.label - 1] if o.label - 1 < len(found) else None
                if spot is None:
                    continue
                rows, cols = spot
                dr, dc = o.layer.row_off, o.layer.col_off
                box = (cols.start + dc, rows.start + dr, cols.stop + dc, rows.stop + dr)
                kept.append(replace(o, box=box))
                continue
            assert o.mask is not None
            tight = tight_box(o.mask)
            if tight is None:
                continue
            c0, r0, c1, r1 = tight
            x, y = o.box[0], o.box[1]
            box = (x + c0, y + r0, x + c1, y + r1)
            kept.append(replace(o, box=box, mask=o.mask[r0:r1, c0:c1]))
        layers = [layer for layer in self.layers if any(o.layer is layer for o in kept)]
        return ObjectSet(kept, layers, self.shape)

    def numbered(self, start: int = 0) -> ObjectSet:
        """The objects with their run ``value``: ``start`` plus their label for layer
        objects (a backend's label values are kept), then ``start`` plus the next
        free numbers for cropped objects, in order."""
        top = max((o.label for o in self.objects if o.layer is not None), default=0)
        numbered, next_free = [], start + top
        for o in self.objects:
            if o.layer is not None:
                numbered.append(replace(o, value=start + o.label))
            else:
                next_free += 1
                numbered.append(replace(o, value=next_free))
        return ObjectSet(numbered, list(self.layers), self.shape)

    @property
    def top_value(self) -> int:
        """The largest ``value`` of the set (0 when empty)."""
        return max((o.value for o in self.objects), default=0)

    def pixel_counts(self) -> np.ndarray:
        """Pixels of each object, in order (int64)."""
        counts = np.zeros(len(self.objects), dtype=np.int64)
        per_layer = {id(layer): layer_counts(layer) for layer in self.layers}
        for i, o in enumerate(self.objects):
            if o.layer is not None:
                found = per_layer[id(o.layer)]
                counts[i] = found[o.label] if o.label < len(found) else 0
            else:
                assert o.mask is not None
                counts[i] = int(np.count_nonzero(o.mask))
        return counts

    def subset(self, keep: np.ndarray) -> ObjectSet:
        """The objects where ``keep`` (one bool per object) is True.

        Layer objects that are dropped are erased from a copy of their layer, so
        a layer never holds pixels of an object the set no longer has.
        """
        keep = np.asarray(keep, dtype=bool)
        if keep.all():
            return self
        kept = [o for o, k in zip(self.objects, keep, strict=True) if k]
        replaced: dict[int, LabelLayer] = {}
        for layer in self.layers:
            labels = [o.label for o in kept if o.layer is layer]
            if not labels:
                continue
            top = int(layer.labels.max())
            lut = np.zeros(top + 1, dtype=np.int32)
            lut[labels] = labels
            replaced[id(layer)] = LabelLayer(
                relabel(layer.labels, lut), layer.row_off, layer.col_off
            )
        kept = [replace(o, layer=replaced[id(o.layer)]) if o.layer is not None else o for o in kept]
        return ObjectSet(kept, list(replaced.values()), self.shape)

    def label_image(self, shape: tuple[int, int]) -> np.ndarray:
        """Flatten the numbered objects into one ``(H, W)`` int32 label image of ``shape``.

        Each object is drawn with its ``value``; where objects overlap, the highest
        score wins (ties: the later object), as samgeo-api does. NaN scores lose to
        any score.
        """
        out = np.zeros(shape, dtype=np.int32)
        if not self.objects:
            return out
        top = max(o.value for o in self.objects)
        score_of = np.full(top + 1, -np.inf)
        for o in self.objects:
            score_of[o.value] = o.score if np.isfinite(o.score) else -1.0
        score_of[0] = -np.inf
        for layer in self.layers:
            members = [o for o in self.objects if o.layer is layer]
            lut = np.zeros(int(layer.labels.max()) + 1, dtype=np.int32)
            for o in members:
                lut[o.label] = o.value
            h, w = layer.labels.shape
            area = out[layer.row_off : layer.row_off + h, layer.col_off : layer.col_off + w]
            drawn = relabel(layer.labels, lut)
            write = (drawn > 0) & (score_of[drawn] >= score_of[area])
            area[write] = drawn[write]
        cropped = [o for o in self.objects if o.mask is not None]
        cropped.sort(key=lambda o: score_of[o.value])
        for o in cropped:
            area = out[o.slices]
            write = o.pixels & (score_of[o.value] >= score_of[area])
            area[write] = o.value
        return out

    @staticmethod
    def concat(sets: Iterable[ObjectSet]) -> ObjectSet:
        """All objects of ``sets``, in order (the sets must be on one grid)."""
        out = ObjectSet()
        for item in sets:
            out.objects.extend(item.objects)
            out.layers.extend(item.layers)
        return out


#: Pixels per block of whole-layer passes, bounding numpy's 64-bit index copies.
_BLOCK = 1 << 20


def label_counts(labels: np.ndarray, top: int | None = None) -> np.ndarray:
    """Pixels per label value ``0..top`` (default: the largest label), negative labels
    counted as 0, in blocks: ``np.bincount`` copies its input to 64-bit integers,
    which would double the memory of a large label image."""
    flat = labels.reshape(-1)
    if top is None:
        top = max(int(flat.max()), 0) if flat.size else 0
    counts = np.zeros(top + 1, dtype=np.int64)
    for start in range(0, len(flat), _BLOCK):
        counts += np.bincount(np.maximum(flat[start : start + _BLOCK], 0), minlength=top + 1)
    return counts


def layer_counts(layer: LabelLayer) -> np.ndarray:
    """Pixels per label value ``0..max`` of a layer (see :func:`label_counts`)."""
    return label_counts(layer.labels)


def relabel(labels: np.ndarray, lut: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``lut[labels]`` as int32 (into ``out``, which may be ``labels`` itself), computed in
    blocks to bound numpy's 64-bit index copies; labels outside ``lut`` are clipped to it
    (negative ones map to ``lut[0]``)."""
    if out is None:
        out = np.empty(labels.shape, dtype=np.int32)
    src, dst = labels.reshape(-1), out.reshape(-1)
    for start in range(0, len(src), _BLOCK):
        block = np.clip(src[start : start + _BLOCK], 0, len(lut) - 1)
        dst[start : start + _BLOCK] = lut[block]
    return out


def _find_objects(labels: np.ndarray) -> list:
    """``ndimage.find_objects`` of a label image, negative labels as background; the
    image is copied only when it has negative labels (a backend's are 0 and up)."""
    if labels.size and int(labels.min()) < 0:
        labels = np.maximum(labels, 0)
    return ndimage.find_objects(labels)


def shift_box(box: Box, row_off: int, col_off: int) -> Box:
    """``box`` moved by ``(row_off, col_off)`` pixels."""
    return box[0] + col_off, box[1] + row_off, box[2] + col_off, box[3] + row_off


def tight_box(mask: np.ndarray) -> Box | None:
    """The bounding box ``(col0, row0, col1, row1)`` of a boolean mask, or None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@dataclass
class MaskSet:
    """Non-overlapping objects as one label image with a score per label.

    The form in which the classic algorithms produce their regions and classes;
    :meth:`objects` turns it into an :class:`ObjectSet` (one shared label layer).

    Attributes:
        labels: ``(H, W)`` int32 on the chip's pixel grid; 0 is background and
            ``1..n`` are objects.
        scores: ``(n + 1,)`` float32; ``scores[k]`` is the confidence of object
            ``k`` in [0, 1] (NaN where the model gives none); ``scores[0]`` is unused.
    """

    labels: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> MaskSet:
        """A mask set with no objects on a grid of ``shape`` (height, width)."""
        return cls(np.zeros(shape, dtype=np.int32), np.full(1, np.nan, dtype=np.float32))

    @classmethod
    def from_masks(cls, masks: list[np.ndarray], scores: list[float]) -> MaskSet:
        """Flatten boolean masks into a label image, the highest score drawn last.

        Args:
            masks: boolean ``(H, W)`` arrays, one per object, all the same shape.
            scores: one confidence per mask, in [0, 1].
        """
        if not masks:
            raise ValueError("from_masks needs at least one mask; use MaskSet.empty")
        order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
        labels = np.zeros(masks[0].shape, dtype=np.int32)
        out_scores = np.full(len(masks) + 1, np.nan, dtype=np.float32)
        for rank, index in enumerate(order, start=1):
            labels[masks[index]] = rank
            out_scores[rank] = scores[index]
        return cls(labels, out_scores)

    @property
    def count(self) -> int:
        """Number of labels (objects) the set can hold, present or not."""
        return len(self.scores) - 1

    def objects(self, origin: Origin | None = None) -> ObjectSet:
        """The labels as objects sharing one label layer."""
        return ObjectSet.from_labels(self.labels, self.scores, origin=origin)
