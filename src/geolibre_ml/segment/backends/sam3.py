"""The ``sam3`` backend: Meta's SAM 3 through Hugging Face transformers.

Two heads share one image encoder:

- the **detector** (``Sam3Model``) answers concept prompts: a text (or several, in one
  batched decoder pass), optionally with exemplar boxes, gives every instance of the
  concept with a score (detection probability times presence probability);
- the **tracker** (``Sam3TrackerModel``, SAM 2's prompt encoder and mask decoder)
  answers one object per point/box prompt, and the automatic mode's grid of points.

The ViT backbone (~450 M parameters) is held once: the tracker's own backbone is
replaced by the detector's, and the tracker runs only its own neck on the detector's
backbone output, so an image costs one encoder pass whatever is asked of it
(:meth:`Sam3Backend.prepare`); the prepared features are cached by the pipeline and
every further prompt costs only the prompt encoders and decoders. Text embeddings of
recent concepts are cached too.

Every size (input edge, feature maps, number of queries) comes from the checkpoint's
configuration. Masks come out at the chip's full resolution, upsampled a few objects
at a time (never hundreds of full-size masks at once) and cropped to their boxes.

Environment: ``GEOLIBRE_ML_SAM3_DTYPE`` (``float32``, ``bfloat16`` or ``auto``: bfloat16
on CUDA and on CPUs with bfloat16 matrix units (AMX, AVX-512 BF16), else float32) and
``GEOLIBRE_ML_SAM3_BATCH`` (images or concepts per encoder/decoder pass; default 8 on
CUDA, 2 elsewhere). See docs/sam3.md.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..chip import ImageChip
from ..errors import InvalidRequest, ModelUnavailable, UnsupportedPrompt
from ..masks import MaskObject, ObjectSet, Origin, tight_box
from ..prompts import AutomaticPrompt, PointBoxPrompt, Prompt, TextPrompt
from ..weights import locate, missing_weights_message
from .base import Availability, Backend

#: The text the detector is given when only exemplar boxes prompt it (as transformers'
#: processor does for a box-only prompt).
VISUAL_PROMPT = "visual"
#: Score a detection needs in ``box_mode=similar`` (predict has no threshold field;
#: samgeo-api uses SamGeo3's default confidence of 0.5).
SIMILAR_THRESHOLD = 0.5
#: Concepts whose text embeddings are kept (they are small: 32 tokens each).
TEXT_CACHE_SIZE = 64
#: Masks of one kind are upsampled to full resolution in chunks of at most this many
#: float32 pixels (256 MB), whatever the number of objects.
UPSAMPLE_BUDGET = 1 << 26
#: Box IoU above which the detector's lower-scoring duplicate of an object is dropped.
DUPLICATE_IOU = 0.7
#: Automatic mode: box IoU for non-maximum suppression, and SAM's stability offset.
AUTOMATIC_NMS_IOU = 0.7
STABILITY_OFFSET = 1.0
#: Automatic mode: point prompts per tracker pass.
POINTS_PER_BATCH = 64

_DTYPES = ("float32", "bfloat16")


def _installed(name: str) -> bool:
    # Package metadata, not the import system: asking whether SAM 3 could load must not
    # start importing torch (listing models stays cheap; classic never touches torch).
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _has_packages() -> str | None:
    """None when torch and transformers are installed, else what to install."""
    missing = [name for name in ("torch", "transformers") if not _installed(name)]
    if missing:
        return (
            f"SAM 3 needs {' and '.join(missing)}, which are not installed. Install them with "
            "pip install 'geolibre-ml[sam3]'; meanwhile model_version=classic works offline."
        )
    return None


def cpu_has_bfloat16() -> bool:
    """True when this CPU multiplies bfloat16 matrices natively (AMX or AVX-512 BF16),
    where bfloat16 runs SAM 3 several times faster than float32 (bench/bench_sam3.py)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def choose_device(requested: str | None) -> str:
    """``requested`` (``cuda``, ``mps``, ``cpu``, ``cuda:1``...) or the best available."""
    import torch

    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ModelUnavailable(
                f"GEOLIBRE_ML_DEVICE={requested} but no CUDA GPU is usable here. "
                "Unset it to use the best device available, or set it to cpu."
            )
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(device: str, requested: str | None = None) -> str:
    """The weights' dtype: ``requested`` (or ``GEOLIBRE_ML_SAM3_DTYPE``) unless ``auto``;
    automatically bfloat16 on CUDA and on CPUs with bfloat16 matrix units, else float32."""
    value = (requested or os.environ.get("GEOLIBRE_ML_SAM3_DTYPE", "") or "auto").strip().lower()
    aliases = {"fp32": "float32", "bf16": "bfloat16", "float": "float32"}
    value = aliases.get(value, value)
    if value in _DTYPES:
        return value
    if value != "auto":
        raise ModelUnavailable(
            f"GEOLIBRE_ML_SAM3_DTYPE={value} is not a dtype SAM 3 runs in: use float32, "
            "bfloat16 or auto."
        )
    if device.startswith("cuda"):
        return "bfloat16"
    if device == "cpu" and cpu_has_bfloat16():
        return "bfloat16"
    return "float32"


def batch_size_for(device: str) -> int:
    """``GEOLIBRE_ML_SAM3_BATCH``, or 8 images/concepts per pass on CUDA and 2 elsewhere."""
    raw = os.environ.get("GEOLIBRE_ML_SAM3_BATCH", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return 8 if device.startswith("cuda") else 2


@dataclass
class Sam3Features:
    """One image encoded: what every prompt on it shares.

    Attributes:
        shape: ``(height, width)`` of the chip, in pixels.
        fpn: the detector's feature pyramid (``(1, C, h, w)`` per level, finest first).
        fpn_position: their position encodings (shared by every image of a size).
        backbone: the ViT's last hidden state ``(1, tokens, C)``, kept until the tracker
            first needs it (its neck runs on it), then released.
        tracker: the tracker's image embeddings (finest first), made on first use.
    """

    shape: tuple[int, int]
    fpn: tuple[Any, ...]
    fpn_position: tuple[Any, ...]
    backbone: Any | None
    tracker: list[Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes held on the model's device (what the prepared cache counts)."""
        tensors = [*self.fpn, *(self.tracker or ()), self.backbone]
        return sum(int(t.numel() * t.element_size()) for t in tensors if t is not None)


class Sam3Backend(Backend):
    """SAM 3 (detector and tracker on one image encoder) through transformers."""

    version: ClassVar[str] = "sam3"
    model_ids: ClassVar[tuple[str, ...]] = ("facebook/sam3",)
    thread_safe: ClassVar[bool] = False
    wants_gpu: ClassVar[bool] = True
    default_box_mode: ClassVar[str] = "similar"
    #: Box IoU above which the lower-scoring of two detections of one concept is
    #: dropped as a duplicate (1.0 keeps every query).
    duplicate_iou: float = DUPLICATE_IOU

    def __init__(self, model_id: str, device: str | None = None, *, dtype: str | None = None):
        super().__init__(model_id, device)
        problem = _has_packages()
        if problem:
            raise ModelUnavailable(problem, fields="model_version")
        found = locate(model_id)
        if found.folder is None:
            raise ModelUnavailable(
                missing_weights_message(model_id, found.problem or "not found"),
                fields="model_version",
            )
        import torch
        from transformers import Sam3Model, Sam3Processor
        from transformers.utils import logging as hf_logging

        # Load reports and per-load progress bars are noise in a server's log.
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.folder = found.folder
        self.device = choose_device(device)
        self.dtype_name = choose_dtype(self.device, dtype)
        self.torch_dtype = getattr(torch, self.dtype_name)
        self.batch_size = batch_size_for(self.device)
        self.processor = Sam3Processor.from_pretrained(self.folder)
        self.detector = self._load(Sam3Model)
        self.tracker = self._load_tracker()
        config = self.detector.config
        self._input_size = int(config.vision_config.backbone_config.image_size)
        self._text_cache: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._positions: dict[tuple[int, ...], tuple[Any, ...]] = {}

    # -- loading ---------------------------------------------------------------------

    @classmethod
    def availability(cls, model_id: str) -> Availability:
        problem = _has_packages()
        if problem:
            return Availability(False, problem)
        found = locate(model_id)
        if found.folder is None:
            return Availability(False, missing_weights_message(model_id, found.problem or ""))
        return Availability(True, f"SAM 3 ({model_id}) is on disk and ready to load.")

    def _load(self, cls: Any, config: Any | None = None) -> Any:
        """``cls`` from the checkpoint folder (with ``config`` when given), in the
        backend's dtype, on its device, in evaluation mode."""
        extra = {"config": config} if config is not None else {}
        model = cls.from_pretrained(self.folder, dtype=self.torch_dtype, **extra)
        return model.to(self.device).eval()

    def _load_tracker(self) -> Any | None:
        """The tracker on the detector's backbone, or None for a detector-only checkpoint."""
        model_type = json.loads((self.folder / "config.json").read_text("utf-8")).get("model_type")
        if model_type != "sam3_video":
            return None  # a plain "sam3" checkpoint holds the detector alone
        from transformers import Sam3TrackerConfig, Sam3TrackerModel

        # One backbone in memory, and read from disk once: the checkpoint holds one set
        # of backbone weights, used by both models. The tracker is loaded with an empty
        # backbone (no layers: its layer weights are never read), then given the
        # detector's; its neck, prompt encoder and mask decoder load as usual.
        outer = Sam3TrackerConfig.from_pretrained(self.folder)
        inner = outer.tracker_config
        config = Sam3TrackerConfig(**inner) if isinstance(inner, dict) else inner
        config.vision_config.backbone_config.num_hidden_layers = 0
        config.vision_config.backbone_config.global_attn_indexes = []
        tracker = self._load(Sam3TrackerModel, config)
        tracker.vision_encoder.backbone = self.detector.vision_encoder.backbone
        return tracker

    @property
    def input_size(self) -> int | None:
        return self._input_size

    def close(self) -> None:
        """Release the models, cached text embeddings and GPU memory."""
        self._text_cache.clear()
        self._positions.clear()
        self.detector = self.tracker = None
        import gc

        import torch

        gc.collect()
        if str(self.device).startswith("cuda"):
            torch.cuda.empty_cache()

    # -- prompts ---------------------------------------------------------------------

    def check_prompt(self, prompt: Prompt) -> None:
        if isinstance(prompt, TextPrompt):
            if not any(c.strip() for c in prompt.concepts):
                raise InvalidRequest("prompt is empty: name what to find, e.g. water or trees.")
            return
        if self.tracker is not None:
            return
        if isinstance(prompt, PointBoxPrompt) and _mode_of(prompt) == "similar":
            if prompt.points:
                raise UnsupportedPrompt(self._no_tracker("point prompts"))
            return
        raise UnsupportedPrompt(self._no_tracker(f"{prompt.mode} prompts"))

    def _no_tracker(self, what: str) -> str:
        return (
            f"The SAM 3 checkpoint {self.model_id} holds the detector only (no tracker), "
            f"so it cannot answer {what}. Use a full SAM 3 checkpoint such as facebook/sam3, "
            "or text prompts and box_mode=similar."
        )

    # -- the image encoder -------------------------------------------------------------

    def prepare(self, chip: ImageChip) -> Sam3Features:
        """Encode ``chip`` once (the ViT backbone and the detector's neck)."""
        return self.prepare_batch([chip])[0]

    def prepare_batch(self, chips: Sequence[ImageChip]) -> list[Sam3Features]:
        """Encode several chips, :attr:`batch_size` per encoder pass."""
        import torch

        out: list[Sam3Features] = []
        for start in range(0, len(chips), self.batch_size):
            group = chips[start : start + self.batch_size]
            pixels = self.processor.image_processor(
                images=[chip.rgb for chip in group], return_tensors="pt"
            )["pixel_values"].to(self.device, self.torch_dtype)
            with torch.inference_mode():
                vision = self.detector.get_vision_features(pixel_values=pixels)
            for i, chip in enumerate(group):
                fpn = tuple(level[i : i + 1].clone() for level in vision.fpn_hidden_states)
                out.append(
                    Sam3Features(
                        shape=chip.shape,
                        fpn=fpn,
                        fpn_position=self._shared_positions(vision.fpn_position_encoding),
                        backbone=vision.last_hidden_state[i : i + 1].clone(),
                    )
                )
        return out

    def _shared_positions(self, encodings: Sequence[Any]) -> tuple[Any, ...]:
        """Position encodings depend only on the feature sizes: one copy per size."""
        key = tuple(int(s) for e in encodings for s in e.shape[-2:])
        if key not in self._positions:
            self._positions[key] = tuple(e[:1].clone() for e in encodings)
        return self._positions[key]

    def prepared_nbytes(self, prepared: Sam3Features) -> int:
        return prepared.nbytes

    def _tracker_embeddings(self, features: Sam3Features) -> list[Any]:
        """The tracker's image embeddings: its own neck on the shared backbone output,
        exactly what ``Sam3TrackerModel.get_image_embeddings`` computes from pixels."""
        import torch

        with features.lock:
            if features.tracker is None:
                tracker = self.tracker
                hidden = features.backbone
                side = tracker.prompt_encoder.image_embedding_size
                spatial = hidden.view(1, side[0], side[1], -1).permute(0, 3, 1, 2)
                with torch.inference_mode():
                    maps, _ = tracker.vision_encoder.neck(spatial)
                    maps = list(maps[:-1])
                    maps[0] = tracker.mask_decoder.conv_s0(maps[0])
                    maps[1] = tracker.mask_decoder.conv_s1(maps[1])
                    maps[-1] = maps[-1] + tracker.no_memory_embedding.view(1, -1, 1, 1)
                features.tracker = maps
                features.backbone = None  # the neck's input is no longer needed
            return features.tracker

    # -- answering -------------------------------------------------------------------

    def run(self, prepared: Sam3Features, prompt: Prompt) -> ObjectSet:
        if isinstance(prompt, TextPrompt):
            return self._concepts(
                prepared,
                prompt.concepts,
                prompt.confidence_threshold,
                prompt.boxes,
                prompt.box_labels,
            )
        if isinstance(prompt, AutomaticPrompt):
            return self._automatic(prepared, prompt)
        if isinstance(prompt, PointBoxPrompt):
            return self._predict(prepared, prompt)
        raise UnsupportedPrompt(f"SAM 3 cannot answer {type(prompt).__name__}.")

    def _text_embedding(self, concept: str) -> tuple[Any, Any]:
        """``(features (1, tokens, C), attention mask (1, tokens))`` of ``concept``, cached."""
        import torch

        cached = self._text_cache.get(concept)
        if cached is not None:
            self._text_cache.move_to_end(concept)
            return cached
        length = int(self.detector.config.text_config.max_position_embeddings)
        tokens = self.processor.tokenizer(
            [concept], return_tensors="pt", padding="max_length", max_length=length, truncation=True
        )
        ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device)
        with torch.inference_mode():
            embedded = self.detector.get_text_features(input_ids=ids, attention_mask=mask)
        cached = (embedded.pooler_output, mask)
        self._text_cache[concept] = cached
        while len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return cached

    def _concepts(
        self,
        features: Sam3Features,
        concepts: Sequence[str],
        threshold: float,
        boxes: Sequence[tuple[float, float, float, float]] = (),
        box_labels: Sequence[int] = (),
    ) -> ObjectSet:
        """Every instance of each concept: one batched detector pass per
        :attr:`batch_size` concepts on the shared image features."""
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        found: list[MaskObject] = []
        for start in range(0, len(concepts), self.batch_size):
            group = list(concepts[start : start + self.batch_size])
            n = len(group)
            embedded = [self._text_embedding(c) for c in group]
            text = torch.cat([e[0] for e in embedded])
            mask = torch.cat([e[1] for e in embedded])
            vision = Sam3VisionEncoderOutput(
                fpn_hidden_states=tuple(f.expand(n, -1, -1, -1) for f in features.fpn),
                fpn_position_encoding=tuple(p.expand(n, -1, -1, -1) for p in features.fpn_position),
            )
            extra = self._exemplars(features.shape, boxes, box_labels, n)
            with torch.inference_mode():
                outputs = self.detector(
                    vision_embeds=vision,
                    text_embeds=BaseModelOutputWithPooling(pooler_output=text),
                    attention_mask=mask,
                    **extra,
                )
            scores = outputs.pred_logits.float().sigmoid()
            scores = scores * outputs.presence_logits.float().sigmoid()
            for i, concept in enumerate(group):
                found.extend(
                    self._instances(
                        features.shape,
                        outputs.pred_masks[i],
                        outputs.pred_boxes[i],
                        scores[i],
                        threshold,
                        Origin(prompt=concept),
                    )
                )
        return ObjectSet(found, shape=features.shape)

    def _exemplars(
        self,
        shape: tuple[int, int],
        boxes: Sequence[tuple[float, float, float, float]],
        labels: Sequence[int],
        n: int,
    ) -> dict[str, Any]:
        """Exemplar boxes as the detector takes them: normalised ``(cx, cy, w, h)``."""
        if not boxes:
            return {}
        import torch

        height, width = shape
        xyxy = torch.tensor(boxes, dtype=torch.float32)
        xyxy[:, 0::2] /= width
        xyxy[:, 1::2] /= height
        xyxy = xyxy.clamp(0, 1)
        cxcywh = torch.stack(
            [
                (xyxy[:, 0] + xyxy[:, 2]) / 2,
                (xyxy[:, 1] + xyxy[:, 3]) / 2,
                xyxy[:, 2] - xyxy[:, 0],
                xyxy[:, 3] - xyxy[:, 1],
            ],
            dim=-1,
        )
        label = torch.tensor(list(labels) or [1] * len(boxes), dtype=torch.long)
        return {
            "input_boxes": cxcywh.expand(n, -1, -1).to(self.device, self.torch_dtype),
            "input_boxes_labels": label.expand(n, -1).to(self.device),
        }

    def _instances(
        self,
        shape: tuple[int, int],
        masks: Any,
        boxes: Any,
        scores: Any,
        threshold: float,
        origin: Origin,
    ) -> list[MaskObject]:
        """The detector's queries above ``threshold`` (0 keeps every one), their
        overlapping duplicates removed, as full-resolution cropped masks."""
        import torch
        from torchvision.ops import nms

        keep = scores > threshold if threshold > 0 else torch.ones_like(scores, dtype=torch.bool)
        index = torch.nonzero(keep).flatten()
        if index.numel() == 0:
            return []
        height, width = shape
        scale = torch.tensor([width, height, width, height], device=boxes.device)
        pixel_boxes = boxes[index].float() * scale
        kept = nms(pixel_boxes, scores[index], self.duplicate_iou)
        index = index[kept]
        probabilities = masks[index].float().sigmoid()
        return self._full_size(
            shape, probabilities, scores[index].tolist(), origin, threshold=0.5, origins=None
        )

    def _full_size(
        self,
        shape: tuple[int, int],
        low_res: Any,
        scores: list[float],
        origin: Origin,
        *,
        threshold: float,
        origins: list[Origin] | None,
    ) -> list[MaskObject]:
        """Upsample ``low_res`` ``(k, h, w)`` maps to ``shape`` (bilinear, as
        transformers' post-processing), threshold, crop each to its box; a few at a time."""
        import torch
        from torch.nn.functional import interpolate

        height, width = shape
        chunk = max(1, UPSAMPLE_BUDGET // max(height * width, 1))
        out: list[MaskObject] = []
        for start in range(0, low_res.shape[0], chunk):
            part = low_res[start : start + chunk].float()
            with torch.inference_mode():
                full = interpolate(
                    part.unsqueeze(0), size=(height, width), mode="bilinear", align_corners=False
                )[0]
                binary = (full > threshold).cpu().numpy()
            for j, mask in enumerate(binary):
                box = tight_box(mask)
                if box is None:
                    continue
                c0, r0, c1, r1 = box
                k = start + j
                out.append(
                    MaskObject(
                        box,
                        float(scores[k]),
                        origins[k] if origins is not None else origin,
                        mask=np.ascontiguousarray(mask[r0:r1, c0:c1]),
                    )
                )
        return out

    # -- the tracker: points, boxes, the automatic grid --------------------------------

    def _track(
        self,
        features: Sam3Features,
        points: Any | None,
        labels: Any | None,
        boxes: Any | None,
        *,
        multimask: bool,
    ) -> tuple[Any, Any]:
        """Tracker masks for a batch of prompts on the shared features.

        Args:
            points: ``(P, n, 2)`` model-input pixels, or None; labels ``(P, n)``
                (1, 0; -10 padding).
            boxes: ``(P, 4)`` model-input ``xyxy``, or None.

        Returns:
            ``(low-res mask logits (P, m, h, w), predicted IoU (P, m))``, m = 3 with
            ``multimask`` else 1.
        """
        import torch

        embeddings = self._tracker_embeddings(features)
        with torch.inference_mode():
            out = self.tracker(
                image_embeddings=embeddings,
                input_points=points.unsqueeze(0) if points is not None else None,
                input_labels=labels.unsqueeze(0) if labels is not None else None,
                input_boxes=boxes.unsqueeze(0) if boxes is not None else None,
                multimask_output=multimask,
            )
        return out.pred_masks[0], out.iou_scores[0].float()

    def _to_input(self, shape: tuple[int, int], xy: np.ndarray) -> Any:
        """Chip pixel coordinates (x, y pairs in the last axis) in model-input pixels."""
        import torch

        height, width = shape
        size = float(self._input_size)
        scale = np.array([size / width, size / height] * (xy.shape[-1] // 2), dtype=np.float32)
        return torch.from_numpy(np.asarray(xy, dtype=np.float32) * scale).to(
            self.device, self.torch_dtype
        )

    def _predict(self, features: Sam3Features, prompt: PointBoxPrompt) -> ObjectSet:
        """Boxes and points: with ``box_mode=similar`` (the default, as samgeo-api)
        the boxes are exemplars and the detector finds every object like them; with
        ``object`` each box is one object, refined by the points inside it. Points
        outside every box make one more object. ``multimask_output`` keeps the three
        candidates of each prompt, else the best one."""
        import torch

        found: list[MaskObject] = []
        if _mode_of(prompt) == "similar":
            if prompt.boxes:
                similar = self._concepts(features, [VISUAL_PROMPT], SIMILAR_THRESHOLD, prompt.boxes)
                # Found from all the boxes together, not from one of them.
                found.extend(replace(o, origin=Origin()) for o in similar)
            loose = prompt.labelled_points
            boxes: tuple[tuple[float, float, float, float], ...] = ()
        else:
            boxes = prompt.boxes
            loose = prompt.points_outside_boxes()
        if boxes:
            groups = [prompt.points_in(b) for b in boxes]
            most = max((len(g) for g in groups), default=0)
            xy = np.zeros((len(boxes), max(most, 1), 2), dtype=np.float32)
            lab = np.full((len(boxes), max(most, 1)), -10, dtype=np.int64)
            for i, group in enumerate(groups):
                for j, (p, label) in enumerate(group):
                    xy[i, j], lab[i, j] = p, label
            masks, iou = self._track(
                features,
                self._to_input(features.shape, xy) if most else None,
                torch.from_numpy(lab).to(self.device) if most else None,
                self._to_input(features.shape, np.asarray(boxes, dtype=np.float32)),
                multimask=prompt.multimask_output,
            )
            found.extend(
                self._candidates(features.shape, masks, iou, [Origin(box=b) for b in boxes], prompt)
            )
        seeds = [p for p, label in loose if label == 1]
        if seeds:
            xy = np.asarray([[p for p, _ in loose]], dtype=np.float32)
            lab = torch.tensor([[label for _, label in loose]], device=self.device)
            masks, iou = self._track(
                features,
                self._to_input(features.shape, xy),
                lab,
                None,
                multimask=prompt.multimask_output,
            )
            found.extend(
                self._candidates(features.shape, masks, iou, [Origin(point=seeds[0])], prompt)
            )
        return ObjectSet(found, shape=features.shape)

    def _candidates(
        self,
        shape: tuple[int, int],
        masks: Any,
        iou: Any,
        origins: list[Origin],
        prompt: PointBoxPrompt,
    ) -> list[MaskObject]:
        """Each prompt's masks: all candidates, best first, with ``multimask_output``;
        else the one the tracker gives (its best by predicted IoU)."""
        order = iou.argsort(dim=1, descending=True)
        picked, scores, where = [], [], []
        for i, origin in enumerate(origins):
            ranks = order[i].tolist() if prompt.multimask_output else [int(iou[i].argmax())]
            for candidate, m in enumerate(ranks):
                picked.append(masks[i, m])
                scores.append(float(iou[i, m]))
                where.append(Origin(point=origin.point, box=origin.box, candidate=candidate))
        if not picked:
            return []
        import torch

        return self._full_size(
            shape, torch.stack(picked), scores, Origin(), threshold=0.0, origins=where
        )

    def _automatic(self, features: Sam3Features, prompt: AutomaticPrompt) -> ObjectSet:
        """Every object: SAM's automatic mask generation on the cached features. A
        ``points_per_side`` grid of single-point prompts goes through the tracker in
        batches (three candidates each); candidates below ``pred_iou_thresh`` (the
        tracker's predicted IoU) or ``stability_score_thresh`` (IoU of the mask
        thresholded at +1 and -1 logits) are dropped, then overlapping ones by box
        non-maximum suppression, best first."""
        import torch
        from torchvision.ops import nms

        from ..checkpoints import checkpoint

        side = max(1, int(prompt.points_per_side))
        height, width = features.shape
        offsets = (np.arange(side, dtype=np.float32) + 0.5) / side
        grid = np.stack(np.meshgrid(offsets * width, offsets * height), axis=-1).reshape(-1, 2)
        kept_masks, kept_scores, kept_boxes = [], [], []
        for start in range(0, len(grid), POINTS_PER_BATCH):
            checkpoint()
            xy = grid[start : start + POINTS_PER_BATCH][:, None, :]
            labels = torch.ones(xy.shape[:2], dtype=torch.long, device=self.device)
            masks, iou = self._track(
                features, self._to_input(features.shape, xy), labels, None, multimask=True
            )
            logits = masks.flatten(0, 1).float()
            scores = iou.flatten()
            inner = (logits > STABILITY_OFFSET).sum(dim=(1, 2)).float()
            outer = (logits > -STABILITY_OFFSET).sum(dim=(1, 2)).float()
            stability = torch.where(outer > 0, inner / outer.clamp(min=1), torch.zeros_like(outer))
            good = (scores >= prompt.pred_iou_thresh) & (stability >= prompt.stability_score_thresh)
            good &= (logits > 0).flatten(1).any(dim=1)
            if not bool(good.any()):
                continue
            logits, scores = logits[good], scores[good]
            kept_masks.append(logits.to(torch.float16))
            kept_scores.append(scores)
            kept_boxes.append(_mask_boxes(logits > 0))
        if not kept_masks:
            return ObjectSet([], shape=features.shape)
        masks = torch.cat(kept_masks)
        scores = torch.cat(kept_scores)
        boxes = torch.cat(kept_boxes)
        low_h, low_w = masks.shape[-2:]
        scale = torch.tensor([width / low_w, height / low_h] * 2, device=boxes.device)
        order = nms(boxes * scale, scores, AUTOMATIC_NMS_IOU)
        checkpoint()
        return ObjectSet(
            self._full_size(
                features.shape,
                masks[order],
                scores[order].tolist(),
                Origin(),
                threshold=0.0,
                origins=None,
            ),
            shape=features.shape,
        )


def _mask_boxes(masks: Any) -> Any:
    """``(k, 4)`` float ``xyxy`` boxes (pixel edges) of ``(k, h, w)`` boolean masks."""
    import torch

    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    h, w = masks.shape[-2:]
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ys, h).min(dim=1).values
    y1 = torch.where(rows, ys, -1).max(dim=1).values + 1
    x0 = torch.where(cols, xs, w).min(dim=1).values
    x1 = torch.where(cols, xs, -1).max(dim=1).values + 1
    return torch.stack([x0, y0, x1, y1], dim=1).float()


def _mode_of(prompt: PointBoxPrompt) -> str:
    """``box_mode``, ``similar`` (samgeo-api's behaviour) when not given."""
    return prompt.box_mode or Sam3Backend.default_box_mode


__all__ = [
    "Sam3Backend",
    "Sam3Features",
    "batch_size_for",
    "choose_device",
    "choose_dtype",
    "cpu_has_bfloat16",
]
