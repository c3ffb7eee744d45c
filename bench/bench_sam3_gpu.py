"""Benchmark: full-size SAM 3 on one CUDA GPU (H100/H200), in one script, printing JSON.

Everything is built in memory: the real architecture (``Sam3VideoConfig()``) with random
weights initialised on the GPU (speed does not depend on their values; no 3.4 GB file is
written), in bfloat16. Only the processor's few files (tokenizer, image-processor
settings, configuration; a few hundred kB) go to a temporary folder, because the
backend loads its processor from the checkpoint folder.

Measured, each after a warm-up pass, median of ``--repeat`` runs (CUDA synchronised):

- ``ours``: ``Sam3Backend.prepare_batch`` (the vision encoder, ``batch_size`` tiles per
  pass) then ``run`` of a text prompt on each tile, at batch 1, 4, 8 and 16: ms per
  tile, the encoder's share, and the peak GPU memory (``max_memory_allocated``);
- ``transformers``: transformers as shipped (``Sam3Processor`` + ``Sam3Model`` forward
  + ``post_process_instance_segmentation``) at the same batches, for comparison;
- ``second_prompt``: a new concept on a tile already encoded (text encoder, DETR
  encoder/decoder, mask head, full-size masks), and the same concept again (its text
  embedding cached);
- ``compiled``: regional compilation of the vision encoder (``layer.compile()`` on each
  ViT layer: the 32 layers share two graphs, windowed and global attention, so they
  compile once, not 32 times): the warm-up (compile) seconds and then ms per tile.

Issue 9 (run first, before the phases above): a text prompt on a whole 10,000 x 10,000
px GeoTIFF, end to end, polygons out, side by side with segment-geospatial:

- ``raster``: ``segment_raster`` (``ReadOptions()`` defaults: the engine picks its
  tiles and batches) then ``formats.write(result, "geojson", ...)``, twice (a cold and
  a warm run), with the windows the engine reported, peak GPU memory and the process's
  peak RSS (``VmHWM``, reset before the phase);
- ``samgeo_tiled``: segment-geospatial 1.4.2's own ``SamGeo3(backend="transformers")``
  ``generate_masks_tiled`` (its defaults: 1024 px tiles, 128 px overlap; a uint16 mask,
  since rasterio cannot polygonize its default uint32) on the same
  image and the same detector weights (a float32 copy taken before our backend casts
  its own: samgeo runs float32, as it loads), under torch's default matmul precision
  (``--samgeo-tf32`` allows TF32), then samgeo's polygonize (``common.raster_to_vector``
  when geopandas is installed; otherwise its same steps, the mask read whole and
  ``rasterio.features.shapes`` to shapely, with the GeoJSON written by ``json`` instead
  of ``GeoDataFrame.to_file``); the ratio samgeo / ours (warm) is reported.

The raster (``examples/sample.tif`` resized and shifted per window, written window by
window, tiled and deflate) is written to a temporary folder, or given with ``--raster``.
segment-geospatial comes from ``--samgeo-dir`` (a ``pip install --no-deps --target``
folder, see ``tests/support/samgeo.py``; a machine with no network needs one carried),
else it is installed into the temporary folder; when it cannot be, that phase is
skipped and the report says why.

Goals (issue 8): at most 15 ms per tile batched with a warm-up under 60 s; a second
prompt under 10 ms. Issue 9: the 10,000 px raster under 4 s end to end and at least 10x
faster than segment-geospatial (measured before issue 9 on an H100: samgeo 39.8 s for
the tiles with zero detections, plus 1.5 s to polygonize). The whole script under 8
minutes (``--budget-s`` skips what would not fit; what ran is reported).

Usage::

    python bench/bench_sam3_gpu.py [--out FILE] [--samgeo-dir DIR]   # on the GPU machine
    python bench/bench_sam3_gpu.py --smoke    # tiny model on the CPU, 1500 px raster, tile 112
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

PROMPT = "trees"
MIB = 1 << 20
#: samgeo's mask dtype: its default, uint32, is one ``rasterio.features.shapes`` refuses, so
#: its own ``raster_to_vector`` could not polygonize it; uint16 holds 65,535 objects.
SAMGEO_MASK_DTYPE = "uint16"
#: Edge of the windows the test raster is written in (a multiple of its 512 px blocks).
RASTER_WINDOW = 2048


class Clock:
    """Wall time that waits for the device's queued work (CUDA is asynchronous)."""

    def __init__(self, device: str) -> None:
        import torch

        self.cuda = device.startswith("cuda")
        self.torch = torch

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def time(self, work: Callable[[], Any]) -> float:
        """Seconds ``work()`` takes, device work included."""
        self.sync()
        start = time.perf_counter()
        work()
        self.sync()
        return time.perf_counter() - start

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / MIB if self.cuda else None


def median_ms(clock: Clock, work: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    """Median and all of ``repeat`` timed runs of ``work``, in milliseconds (after one warm-up)."""
    work()
    runs = [clock.time(work) * 1000 for _ in range(repeat)]
    return statistics.median(runs), runs


# -- the model, in memory ------------------------------------------------------------------


def build_models(smoke: bool, device: str) -> tuple[Any, Any, Any]:
    """``(config, detector, tracker)`` with random weights, initialised on ``device``
    (float32: the backend casts to its dtype as it does after loading)."""
    import torch
    from transformers import Sam3Model, Sam3TrackerModel, Sam3VideoConfig

    from support.sam3_checkpoint import TINY_IMAGE_SIZE, tiny_configs

    if smoke:
        config = Sam3VideoConfig(**tiny_configs())
        config.image_size = TINY_IMAGE_SIZE
    else:
        config = Sam3VideoConfig()
    torch.manual_seed(0)
    with torch.device(device):
        detector = Sam3Model(config).eval()
        tracker = Sam3TrackerModel(config).eval()
    return config, detector, tracker


def write_processor(config: Any, folder: Path) -> None:
    """The processor files and the configuration (no weights) in ``folder``: the backend
    reads these from its checkpoint folder."""
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3Processor

    from support.sam3_checkpoint import tokenizer_files

    config.save_pretrained(folder)
    tokenizer_files(folder)
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    size = config.detector_config.vision_config.backbone_config.image_size
    side = config.tracker_config.prompt_encoder_config.image_size // 14 * 4
    image_processor = Sam3ImageProcessor(
        size={"height": size, "width": size}, mask_size={"height": side, "width": side}
    )
    Sam3Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


@contextmanager
def in_memory_backend(
    folder: Path, models: dict[str, Any], device: str, dtype: str
) -> Iterator[Any]:
    """Our ``Sam3Backend`` on models already in memory.

    Two things of loading are replaced, nothing else: the check that weights are on disk
    (``locate``: there are none, the models were never saved) and ``_load`` (which would
    read them: it returns the model built here, cast and moved as ``_load`` does). From
    there on, sharing the backbone, ``prepare_batch`` and ``run`` are the backend's code.
    """
    from geolibre_ml.segment import weights
    from geolibre_ml.segment.backends import sam3

    class InMemory(sam3.Sam3Backend):
        def _load(self, cls: Any, config: Any | None = None) -> Any:
            return models[cls.__name__].to(self.device, self.torch_dtype).eval()

    with mock.patch.object(sam3, "locate", lambda _id: weights.Located(folder)):
        backend = InMemory(str(folder), device, dtype=dtype)
    try:
        yield backend
    finally:
        backend.close()


def tiles(size: int, count: int) -> list[np.ndarray]:
    """``count`` distinct ``(size, size, 3)`` uint8 tiles: ``examples/sample.tif`` resized
    and rolled (distinct pixels, so nothing can be cached between them)."""
    import cv2
    import rasterio

    with rasterio.open(ROOT / "examples" / "sample.tif") as src:
        rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    base = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(np.roll(base, 7 * i, axis=1)) for i in range(count)]


def chip_of(rgb: np.ndarray) -> Any:
    from affine import Affine
    from rasterio.windows import Window

    from geolibre_ml.segment.chip import ImageChip

    h, w = rgb.shape[:2]
    return ImageChip(
        rgb=rgb, valid=np.ones((h, w), bool), window=Window(0, 0, w, h), transform=Affine.identity()
    )


# -- the measurements ----------------------------------------------------------------------


def measure_ours(backend: Any, clock: Clock, images: list, batches: list[int], repeat: int) -> dict:
    """ms per tile through ``prepare_batch`` + ``run`` per tile, and the encoder's share."""
    from geolibre_ml.segment.prompts import TextPrompt

    out = {}
    prompt = TextPrompt(PROMPT, 0.5)
    for batch in batches:
        backend.batch_size = batch
        chips = [chip_of(rgb) for rgb in images[:batch]]

        def encode(chips: list = chips) -> list:
            return backend.prepare_batch(chips)

        def whole(chips: list = chips) -> None:
            for features in backend.prepare_batch(chips):
                backend.run(features, prompt)

        clock.reset_peak()
        encoder_ms, _ = median_ms(clock, encode, repeat)
        total_ms, runs = median_ms(clock, whole, repeat)
        out[str(batch)] = {
            "ms_per_tile": total_ms / batch,
            "encoder_ms_per_tile": encoder_ms / batch,
            "runs_ms": runs,
            "peak_gpu_mib": clock.peak_mib(),
        }
    return out


def measure_transformers(
    backend: Any, clock: Clock, images: list, batches: list[int], repeat: int
) -> dict:
    """ms per tile with transformers as shipped (processor, forward, post-processing) on
    the same detector weights and dtype."""
    import torch

    model, processor = backend.detector, backend.processor
    out = {}
    for batch in batches:
        group = images[:batch]

        def whole(group: list = group) -> None:
            inputs = processor(images=group, text=[PROMPT] * len(group), return_tensors="pt")
            inputs = inputs.to(model.device)
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            with torch.inference_mode():
                outputs = model(**inputs)
            processor.post_process_instance_segmentation(
                outputs, threshold=0.5, target_sizes=inputs["original_sizes"].tolist()
            )

        clock.reset_peak()
        total_ms, runs = median_ms(clock, whole, repeat)
        out[str(batch)] = {
            "ms_per_tile": total_ms / batch,
            "runs_ms": runs,
            "peak_gpu_mib": clock.peak_mib(),
        }
    return out


def measure_second_prompt(backend: Any, clock: Clock, image: np.ndarray, repeat: int) -> dict:
    """A new concept on an encoded tile (text encoded too), and a concept seen before."""
    from geolibre_ml.segment.prompts import TextPrompt

    features = backend.prepare(chip_of(image))
    backend.run(features, TextPrompt("warm-up", 0.5))  # first-call costs, not the prompt's
    new = [
        clock.time(lambda i=i: backend.run(features, TextPrompt(f"water {i}", 0.5))) * 1000
        for i in range(repeat)
    ]
    seen_ms, seen = median_ms(
        clock, lambda: backend.run(features, TextPrompt("water 0", 0.5)), repeat
    )
    return {
        "new_concept_ms": statistics.median(new),
        "new_concept_runs_ms": new,
        "seen_concept_ms": seen_ms,
        "seen_concept_runs_ms": seen,
    }


def measure_compiled(
    backend: Any,
    clock: Clock,
    images: list,
    batches: list[int],
    repeat: int,
    compile_backend: str,
    deadline: float,
) -> dict:
    """Regional compilation of the ViT: each layer compiled on its own (identical layers
    reuse one graph); warm-up seconds per batch size, then ms per tile."""
    import torch

    layers = backend.detector.vision_encoder.backbone.layers
    # Shapes are fixed per batch size; "dynamic=False" keeps each graph specialised
    # (fastest kernels) and a new batch size is one more, bounded, compile.
    for layer in layers:
        layer.compile(backend=compile_backend, dynamic=False)
    out: dict[str, Any] = {"layers": len(layers), "backend": compile_backend}
    from geolibre_ml.segment.prompts import TextPrompt

    prompt = TextPrompt(PROMPT, 0.5)
    for batch in batches:
        if time.perf_counter() > deadline:
            out[str(batch)] = {"skipped": "time budget spent"}
            continue
        backend.batch_size = batch
        chips = [chip_of(rgb) for rgb in images[:batch]]
        warm_up_s = clock.time(lambda chips=chips: backend.prepare_batch(chips))

        def whole(chips: list = chips) -> None:
            for features in backend.prepare_batch(chips):
                backend.run(features, prompt)

        clock.reset_peak()
        encoder_ms, _ = median_ms(clock, lambda chips=chips: backend.prepare_batch(chips), repeat)
        total_ms, runs = median_ms(clock, whole, repeat)
        out[str(batch)] = {
            "warm_up_s": warm_up_s,
            "ms_per_tile": total_ms / batch,
            "encoder_ms_per_tile": encoder_ms / batch,
            "runs_ms": runs,
            "peak_gpu_mib": clock.peak_mib(),
        }
    out["recompiles"] = torch._dynamo.utils.counters["stats"].get("unique_graphs", None)
    return out


# -- issue 9: a whole raster, end to end, against segment-geospatial -------------------------


def write_raster(path: Path, size: int) -> float:
    """A ``size`` x ``size`` RGB GeoTIFF (UTM 32N, 1 m, tiled 512, deflate) written window
    by window: ``examples/sample.tif`` resized to one window and shifted differently in
    each (distinct pixels everywhere; the model's speed does not depend on them).
    Returns the seconds it took."""
    import cv2
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    started = time.perf_counter()
    with rasterio.open(ROOT / "examples" / "sample.tif") as src:
        rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    base = cv2.resize(rgb, (RASTER_WINDOW, RASTER_WINDOW), interpolation=cv2.INTER_CUBIC)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32632",
        "transform": from_origin(431200.0, 5362800.0, 1.0, 1.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "photometric": "RGB",
        "num_threads": "ALL_CPUS",
    }
    with rasterio.open(path, "w", **profile) as dst:
        for i, row in enumerate(range(0, size, RASTER_WINDOW)):
            for j, col in enumerate(range(0, size, RASTER_WINDOW)):
                w, h = min(RASTER_WINDOW, size - col), min(RASTER_WINDOW, size - row)
                shifted = np.roll(base, (37 * i, 53 * j), axis=(0, 1))[:h, :w]
                dst.write(np.moveaxis(shifted, -1, 0), window=Window(col, row, w, h))
    return time.perf_counter() - started


def reset_host_peak() -> None:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ``clear_refs``)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def host_peak_mib() -> float | None:
    """This process's ``VmHWM`` (peak RSS since the last reset), in MiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def measure_raster(
    backend: Any, clock: Clock, raster: Path, scratch: Path, read: Any, runs: int = 2
) -> dict:
    """``segment_raster`` with a text prompt on the whole ``raster`` plus writing the
    GeoJSON answer, ``runs`` times (the first pays first-call costs): seconds for each,
    features, windows the engine reported, peak GPU memory and host RSS."""
    from geolibre_ml.segment import formats
    from geolibre_ml.segment.pipeline import FINISH_STEPS, segment_raster
    from geolibre_ml.segment.prompts import TextPrompt

    out: dict[str, Any] = {"read": {k: v for k, v in vars(read).items() if v is not None}}
    seconds = []
    for run in range(runs):
        totals: list[int] = []
        answer = scratch / f"ours-{run}.geojson"

        def work(answer: Path = answer, totals: list = totals) -> None:
            result = segment_raster(
                raster,
                TextPrompt(PROMPT, 0.5),
                backend,
                read=read,
                progress=lambda _done, total: totals.append(total),
            )
            formats.write(result, "geojson", answer)
            out["features"] = len(result.features)

        clock.reset_peak()
        reset_host_peak()
        seconds.append(clock.time(work))
        out["windows"] = (max(totals) - FINISH_STEPS) if totals else None
        out["answer_bytes"] = answer.stat().st_size
        out["peak_gpu_mib"] = clock.peak_mib()
        out["peak_host_rss_mib"] = host_peak_mib()
    out["runs_s"] = seconds
    out["cold_s"], out["warm_s"] = seconds[0], min(seconds[1:] or seconds)
    return out


def samgeo_tile_count(width: int, height: int, tile: int, overlap: int) -> int:
    """The number of tiles ``generate_masks_tiled`` processes (its own arithmetic)."""
    step = tile - overlap
    return max(1, (width - overlap + step - 1) // step) * max(
        1, (height - overlap + step - 1) // step
    )


def samgeo_polygonize(samgeo3: Any, mask_tif: Path, output: Path) -> tuple[float, str, int]:
    """segment-geospatial's polygonize of its mask: ``(seconds, how, features)``.

    ``common.raster_to_vector`` itself when geopandas is installed; otherwise the same
    steps (the band read whole, ``rasterio.features.shapes`` under the nonzero mask, each
    shape to shapely) with the collection written by ``json`` (geopandas' ``to_file``
    is the only step left out).
    """
    import rasterio
    import shapely.geometry
    from rasterio import features

    try:
        import geopandas  # noqa: F401
    except ImportError:
        started = time.perf_counter()
        with rasterio.open(mask_tif) as src:
            band = src.read()
            shapes = features.shapes(band, mask=band != 0, transform=src.transform)
        fc = [
            {"geometry": shapely.geometry.shape(shape), "properties": {"value": value}}
            for shape, value in shapes
        ]
        collection = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "geometry": shapely.geometry.mapping(f["geometry"]),
                    "properties": f["properties"],
                }
                for f in fc
            ],
        }
        output.write_text(json.dumps(collection))
        return time.perf_counter() - started, "samgeo's raster_to_vector steps, json write", len(fc)
    started = time.perf_counter()
    samgeo3.common.raster_to_vector(str(mask_tif), str(output))
    seconds = time.perf_counter() - started
    count = len(json.loads(output.read_text())["features"])
    return seconds, "samgeo common.raster_to_vector", count


def measure_samgeo_tiled(
    samgeo_dir: Path,
    folder: Path,
    detector: Any,
    device: str,
    raster: Path,
    scratch: Path,
    tile: int,
    overlap: int,
    tf32: bool,
) -> dict:
    """segment-geospatial's ``generate_masks_tiled`` then its polygonize, on ``raster``.

    ``SamGeo3(backend="transformers", model_id=folder)`` loads its processor from the
    processor files in ``folder`` (its own code) and its model through
    ``Sam3Model.from_pretrained``, replaced here only to hand it ``detector`` (the same
    random weights as ours, float32) instead of reading weights that were never saved.
    """
    import rasterio
    import torch

    from support.samgeo import load_samgeo3

    # samgeo prints notes when imported and while it runs: kept off stdout, which is ours.
    with contextlib.redirect_stdout(io.StringIO()):
        samgeo3 = load_samgeo3(samgeo_dir)
    with rasterio.open(raster) as src:
        width, height = src.width, src.height
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        with (
            mock.patch.object(samgeo3.Sam3Model, "from_pretrained", lambda *_a, **_k: detector),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            sam = samgeo3.SamGeo3(backend="transformers", model_id=str(folder), device=device)
            mask_tif = scratch / "samgeo-mask.tif"
            sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
            sync()
            started = time.perf_counter()
            sam.generate_masks_tiled(
                str(raster),
                PROMPT,
                str(mask_tif),
                tile_size=tile,
                overlap=overlap,
                dtype=SAMGEO_MASK_DTYPE,
                verbose=False,
            )
            sync()
            tiles_s = time.perf_counter() - started
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    polygonize_s, how, count = samgeo_polygonize(samgeo3, mask_tif, scratch / "samgeo.geojson")
    return {
        "version": getattr(sys.modules.get("samgeo"), "__version__", None),
        "tile_size": tile,
        "overlap": overlap,
        "tiles": samgeo_tile_count(width, height, tile, overlap),
        "tf32": tf32,
        "mask_dtype": SAMGEO_MASK_DTYPE,
        "tiles_s": tiles_s,
        "polygonize_s": polygonize_s,
        "polygonize": how,
        "features": count,
        "total_s": tiles_s + polygonize_s,
    }


def samgeo_folder(requested: Path | None, scratch: Path) -> tuple[Path | None, str | None]:
    """segment-geospatial's install folder: ``requested``, else installed into
    ``scratch``; ``(None, why)`` when it cannot be had (no network, say)."""
    from support.samgeo import SamgeoUnavailable, install_samgeo

    target = requested or scratch / "segment-geospatial"
    try:
        return install_samgeo(target), None
    except SamgeoUnavailable as error:
        return None, str(error).splitlines()[0]


def machine(device: str) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_mib=props.total_memory // MIB,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU, seconds")
    parser.add_argument("--device", help="default: cuda (cpu with --smoke)")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 (float32 with --smoke)")
    parser.add_argument("--batches", default=None, help="default: 1,4,8,16 (1,2 with --smoke)")
    parser.add_argument("--compile-batches", default=None, help="default: 16,8 (2 with --smoke)")
    parser.add_argument(
        "--compile-backend", default=None, help="default: inductor (eager with --smoke)"
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variant")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs (median); 5")
    parser.add_argument("--budget-s", type=float, default=450, help="skip phases past this")
    parser.add_argument("--raster", type=Path, help="issue 9 phases on this GeoTIFF")
    parser.add_argument(
        "--raster-size", type=int, default=None, help="raster edge (10000; 1500 with --smoke)"
    )
    parser.add_argument("--tile-size", type=int, help="ours: tile_size (default: the engine's)")
    parser.add_argument("--tile-overlap", type=int, help="ours: tile_overlap (engine's default)")
    parser.add_argument(
        "--samgeo-tile", default=None, help="samgeo tile,overlap (1024,128; 112,16 with --smoke)"
    )
    parser.add_argument("--samgeo-dir", type=Path, help="segment-geospatial 1.4.2 install")
    parser.add_argument("--samgeo-tf32", action="store_true", help="let samgeo's float32 use TF32")
    parser.add_argument("--no-raster", action="store_true", help="skip the issue 9 phases")
    parser.add_argument("--no-samgeo", action="store_true", help="skip samgeo's tiled run")
    parser.add_argument(
        "--out", type=Path, help="write the JSON report here too (after each phase)"
    )
    args = parser.parse_args()
    smoke = args.smoke
    device = args.device or ("cpu" if smoke else "cuda")
    dtype = args.dtype or ("float32" if smoke else "bfloat16")
    batches = [int(b) for b in (args.batches or ("1,2" if smoke else "1,4,8,16")).split(",")]
    compile_batches = [
        int(b) for b in (args.compile_batches or ("2" if smoke else "16,8")).split(",")
    ]
    repeat = args.repeat or (2 if smoke else 5)
    started = time.perf_counter()
    deadline = started + args.budget_s

    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("No CUDA GPU here: run with --smoke to check the script on the CPU.")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    clock = Clock(device)
    report: dict[str, Any] = {
        "machine": machine(device),
        "command": " ".join(sys.argv),
        "model": "tiny (smoke: a check of the script)" if smoke else "full size, random weights",
        "dtype": dtype,
    }

    def save(phase: str) -> None:
        report.setdefault("phases_done", []).append(phase)
        report["elapsed_s"] = time.perf_counter() - started
        if args.out:
            args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"[bench_sam3_gpu] {phase} done at {report['elapsed_s']:.0f} s", file=sys.stderr)

    start = time.perf_counter()
    config, detector, tracker = build_models(smoke, device)
    # samgeo runs float32, as it loads: its copy is taken before our backend casts ours.
    want_samgeo = not (args.no_raster or args.no_samgeo)
    samgeo_detector = copy.deepcopy(detector) if want_samgeo else None
    report["build_s"] = time.perf_counter() - start
    size = config.detector_config.vision_config.backbone_config.image_size
    images = tiles(size, max([*batches, *compile_batches]))
    with tempfile.TemporaryDirectory(prefix="bench-sam3-gpu-") as scratch:
        folder = Path(scratch)
        write_processor(config, folder)
        models = {"Sam3Model": detector, "Sam3TrackerModel": tracker}
        start = time.perf_counter()
        with in_memory_backend(folder, models, device, dtype) as backend:
            del detector, tracker, models
            report["backend_init_s"] = time.perf_counter() - start
            report["parameters_m"] = {
                "detector": sum(p.numel() for p in backend.detector.parameters()) / 1e6,
                "tracker_without_shared_backbone": sum(
                    p.numel()
                    for n, p in backend.tracker.named_parameters()
                    if not n.startswith("vision_encoder.backbone.")
                )
                / 1e6,
            }
            save("build")
            if not args.no_raster:
                issue9(args, report, backend, clock, folder, samgeo_detector, deadline, save)
            samgeo_detector = None
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            report["ours"] = measure_ours(backend, clock, images, batches, repeat)
            save("ours")
            report["second_prompt"] = measure_second_prompt(backend, clock, images[0], repeat)
            save("second_prompt")
            if time.perf_counter() < deadline:
                report["transformers"] = measure_transformers(
                    backend, clock, images, batches, repeat
                )
                save("transformers")
            if not args.no_compile and time.perf_counter() < deadline:
                report["compiled"] = measure_compiled(
                    backend,
                    clock,
                    images,
                    compile_batches,
                    repeat,
                    args.compile_backend or ("eager" if smoke else "inductor"),
                    deadline,
                )
                save("compiled")
    report["goals"] = goals(report)
    save("goals")
    print(json.dumps(report, indent=2))


def issue9(
    args: argparse.Namespace,
    report: dict[str, Any],
    backend: Any,
    clock: Clock,
    folder: Path,
    samgeo_detector: Any | None,
    deadline: float,
    save: Callable[[str], None],
) -> None:
    """The issue 9 phases: ours end to end on the whole raster, then samgeo's tiled run
    and polygonize on the same raster and weights, and the ratio."""
    from geolibre_ml.segment.prompts import ReadOptions

    smoke = args.smoke
    scratch = folder / "issue9"
    scratch.mkdir()
    raster = args.raster
    if raster is None:
        size = args.raster_size or (1500 if smoke else 10000)
        raster = scratch / f"raster-{size}.tif"
        report["raster_write_s"] = write_raster(raster, size)
    import rasterio

    with rasterio.open(raster) as src:
        report["raster_image"] = {
            "path": str(raster),
            "width": src.width,
            "height": src.height,
            "file_mb": raster.stat().st_size / 1e6,
        }
    read = ReadOptions(tile_size=args.tile_size, tile_overlap=args.tile_overlap)
    report["raster"] = measure_raster(backend, clock, raster, scratch, read)
    save("raster")
    if samgeo_detector is None:
        return
    if time.perf_counter() > deadline:
        report["samgeo_tiled"] = {"skipped": "time budget spent"}
        return
    samgeo_dir, why = samgeo_folder(args.samgeo_dir, scratch)
    if samgeo_dir is None:
        report["samgeo_tiled"] = {"skipped": why}
        return
    tile, overlap = (
        int(v) for v in (args.samgeo_tile or ("112,16" if smoke else "1024,128")).split(",")
    )
    samgeo = measure_samgeo_tiled(
        samgeo_dir,
        folder,
        samgeo_detector,
        str(backend.device),
        raster,
        scratch,
        tile,
        overlap,
        args.samgeo_tf32,
    )
    samgeo["ratio_vs_ours_warm"] = samgeo["total_s"] / report["raster"]["warm_s"]
    samgeo["tiles_ratio_vs_ours_warm"] = samgeo["tiles_s"] / report["raster"]["warm_s"]
    report["samgeo_tiled"] = samgeo
    save("samgeo_tiled")


def goals(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals against what was measured."""
    batched = {k: v["ms_per_tile"] for k, v in report.get("ours", {}).items() if k != "1"}
    compiled = {
        k: v
        for k, v in report.get("compiled", {}).items()
        if isinstance(v, dict) and "ms_per_tile" in v
    }
    best_compiled = min((v["ms_per_tile"] for v in compiled.values()), default=None)
    warm_up = max((v["warm_up_s"] for v in compiled.values()), default=None)
    second = report.get("second_prompt", {}).get("new_concept_ms")
    best = min([*batched.values(), *([best_compiled] if best_compiled else [])], default=None)
    raster = report.get("raster", {})
    samgeo = report.get("samgeo_tiled", {})
    return {
        "raster_end_to_end_warm_s": raster.get("warm_s"),
        "raster_lt_4s": raster.get("warm_s") is not None and raster["warm_s"] < 4,
        "vs_samgeo_tiled": samgeo.get("ratio_vs_ours_warm"),
        "vs_samgeo_ge_10x": samgeo.get("ratio_vs_ours_warm", 0) >= 10,
        "best_batched_ms_per_tile": best,
        "batched_le_15ms": best is not None and best <= 15,
        "compile_warm_up_s": warm_up,
        "warm_up_lt_60s": warm_up is not None and warm_up < 60,
        "second_prompt_ms": second,
        "second_prompt_lt_10ms": second is not None and second < 10,
        "total_lt_8min": report.get("elapsed_s", 0) < 480,
    }


if __name__ == "__main__":
    main()
