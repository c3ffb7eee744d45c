"""Benchmark: full-size SAM 3 on the CPU, our backend against segment-geospatial's, in one run.

The model is the real architecture (``Sam3VideoConfig()``: detector and tracker, 1008-pixel
input) with random weights, built once by ``tests/support/sam3_checkpoint.py`` (speed does
not depend on the weights' values; ``--checkpoint DIR`` keeps it for the next run). The
tile is ``examples/sample.tif`` (RGB bands) resized to the model's 1008 x 1008 input.

Each configuration runs in its own Python process, so that peak memories (VmHWM) do not
mix, one after the other:

- ``ours-float32``, ``ours-bfloat16``: ``Sam3Backend`` with that dtype. Seconds per tile
  (``prepare`` + ``run`` of a text prompt), the vision encoder alone (``prepare``), and a
  second prompt with a new concept on the encoded image (``run`` alone: text encoder,
  DETR encoder and decoder, mask head, full-size masks).
- ``samgeo``: segment-geospatial 1.4.2's own ``SamGeo3(backend="transformers")``
  (``set_image`` + ``generate_masks``), its real ``samgeo3.py`` on the same weights and
  tile; it re-encodes the image for every prompt, so its second prompt is a whole tile.

Then whether bfloat16 changes the answer: every one of the detector's queries on the same
tile and prompt, float32 against bfloat16: score differences and the IoU of each query's
full-size mask.

Usage::

    python bench/bench_sam3.py [--checkpoint DIR] [--samgeo-dir DIR] [--repeat 2] [--out FILE]

Goals (issue 8): at least 4x faster per tile than samgeo, a second prompt under 1 s,
peak memory under 4 GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

PROMPT = "trees"
SECOND_PROMPT = "buildings"
MIB = 1 << 20
CONFIGS = ("ours-float32", "ours-bfloat16", "samgeo")


# -- measuring -------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's resident-memory high-water mark (VmHWM), in MiB."""
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def rss_mib() -> float:
    """This process's resident memory now (VmRSS), in MiB."""
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5), so that the inference peak
    is measured apart from loading's. False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")
    except OSError:
        return False
    return True


def cpu_info() -> dict[str, Any]:
    """The CPU model, core count and the flags that decide bfloat16 speed."""
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags_line = re.search(r"flags\s*:\s*(.*)", text)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    import torch
    import transformers

    return {
        "cpu": model.group(1).strip() if model else platform.processor(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "flags": {f: f in flags for f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f")},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def tile(path: Path, size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8: the first three bands of ``path``, resized (bicubic)."""
    import cv2
    import rasterio

    with rasterio.open(path) as src:
        rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC))


# -- the workers (one process each) ------------------------------------------------------


def work_build(args: argparse.Namespace) -> dict[str, Any]:
    from support.sam3_checkpoint import build_checkpoint

    start = time.perf_counter()
    build_checkpoint(args.checkpoint, tiny=args.tiny)
    return {"build_s": time.perf_counter() - start}


def work_ours(args: argparse.Namespace, dtype: str) -> dict[str, Any]:
    from affine import Affine
    from rasterio.windows import Window

    # Imported before the clock starts, as samgeo's are (load times compare loading).
    from transformers import Sam3Model, Sam3Processor, Sam3TrackerModel  # noqa: F401

    from geolibre_ml.segment.backends.sam3 import Sam3Backend
    from geolibre_ml.segment.chip import ImageChip
    from geolibre_ml.segment.prompts import TextPrompt

    rgb = np.load(args.tile)
    height, width = rgb.shape[:2]
    chip = ImageChip(
        rgb=rgb,
        valid=np.ones((height, width), bool),
        window=Window(0, 0, width, height),
        transform=Affine.identity(),
    )
    start = time.perf_counter()
    backend = Sam3Backend(str(args.checkpoint), "cpu", dtype=dtype)
    load_s = time.perf_counter() - start
    load_peak, after_load = peak_rss_mib(), rss_mib()
    peak_was_reset = reset_peak()
    tiles, encoders, objects = [], [], 0
    for i in range(args.repeat):
        # A new concept each time, so the text embedding cache does not flatter the tile.
        start = time.perf_counter()
        features = backend.prepare(chip)
        encoded = time.perf_counter()
        answer = backend.run(features, TextPrompt(f"{PROMPT} {i}" if i else PROMPT, 0.5))
        tiles.append(time.perf_counter() - start)
        encoders.append(encoded - start)
        objects = len(answer)
    seconds = []
    for i in range(3):
        # The first is a concept never seen (its text is encoded too); later ones differ too.
        start = time.perf_counter()
        backend.run(features, TextPrompt(f"{SECOND_PROMPT} {i}" if i else SECOND_PROMPT, 0.5))
        seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    backend.run(features, TextPrompt(SECOND_PROMPT, 0.5))
    cached_text_s = time.perf_counter() - start
    if args.answers:
        save_queries(backend, features, Path(args.answers), (height, width))
    return {
        "dtype": backend.dtype_name,
        "load_s": load_s,
        "tile_s": min(tiles),
        "tile_s_all": tiles,
        "encoder_s": min(encoders),
        "encoder_s_all": encoders,
        "second_prompt_s": seconds[0],
        "second_prompt_s_all": seconds,
        "repeated_prompt_s": cached_text_s,
        "objects": objects,
        "rss_after_load_mib": after_load,
        "peak_load_mib": load_peak,
        "peak_inference_mib": peak_rss_mib() if peak_was_reset else None,
        "peak_mib": max(load_peak, peak_rss_mib()),
    }


def save_queries(backend: Any, features: Any, path: Path, shape: tuple[int, int]) -> None:
    """Every query of the detector for ``PROMPT`` on ``features``: scores (float32) and
    full-size binary masks (sigmoid, bilinear upsampling, > 0.5, as transformers'
    post-processing), bit-packed, to ``path`` (``.npz``)."""
    import torch
    from torch.nn.functional import interpolate
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    tokens = backend.processor.tokenizer(
        [PROMPT], return_tensors="pt", padding="max_length", max_length=32
    )
    vision = Sam3VisionEncoderOutput(
        fpn_hidden_states=features.fpn, fpn_position_encoding=features.fpn_position
    )
    with torch.inference_mode():
        out = backend.detector(
            vision_embeds=vision,
            input_ids=tokens["input_ids"],
            attention_mask=tokens["attention_mask"],
        )
        scores = out.pred_logits.float().sigmoid() * out.presence_logits.float().sigmoid()
        probabilities = out.pred_masks[0].float().sigmoid()
        packed = []
        for start in range(0, probabilities.shape[0], 16):
            part = interpolate(
                probabilities[start : start + 16][None], size=shape, mode="bilinear"
            )[0]
            packed.append(np.packbits((part > 0.5).numpy(), axis=-1))
    np.savez(path, scores=scores[0].numpy(), masks=np.concatenate(packed))


def work_samgeo(args: argparse.Namespace) -> dict[str, Any]:
    from support.samgeo import load_samgeo3

    rgb = np.load(args.tile)
    samgeo3 = load_samgeo3(Path(args.samgeo_dir))
    # samgeo prints progress ("Found 3 objects."): kept off stdout, which is ours.
    with contextlib.redirect_stdout(sys.stderr):
        start = time.perf_counter()
        sam = samgeo3.SamGeo3(backend="transformers", model_id=str(args.checkpoint), device="cpu")
        load_s = time.perf_counter() - start
        load_peak, after_load = peak_rss_mib(), rss_mib()
        peak_was_reset = reset_peak()
        tiles = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            sam.set_image(rgb)
            sam.generate_masks(PROMPT)
            tiles.append(time.perf_counter() - start)
        start = time.perf_counter()
        sam.generate_masks(SECOND_PROMPT)
        second_s = time.perf_counter() - start
    return {
        "dtype": str(sam.model.dtype).removeprefix("torch."),
        "load_s": load_s,
        "tile_s": min(tiles),
        "tile_s_all": tiles,
        "second_prompt_s": second_s,
        "objects": len(sam.masks),
        "rss_after_load_mib": after_load,
        "peak_load_mib": load_peak,
        "peak_inference_mib": peak_rss_mib() if peak_was_reset else None,
        "peak_mib": max(load_peak, peak_rss_mib()),
    }


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.manual_seed(0)
    if args.worker == "build":
        result = work_build(args)
    elif args.worker == "samgeo":
        result = work_samgeo(args)
    else:
        result = work_ours(args, args.worker.removeprefix("ours-"))
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")


def spawn(name: str, args: argparse.Namespace, folder: Path, **extra: str) -> dict[str, Any]:
    """Run worker ``name`` in a fresh interpreter; its result."""
    result = folder / f"{name}.json"
    argv = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--result",
        str(result),
        "--checkpoint",
        str(args.checkpoint),
        "--repeat",
        str(args.repeat),
        *(["--tiny"] if args.tiny else []),
    ]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", value]
    env = {**os.environ, "GEOLIBRE_ML_SAM3_MODEL": str(args.checkpoint)}
    print(f"[bench_sam3] {name} ...", file=sys.stderr, flush=True)
    subprocess.run(argv, check=True, env=env)
    return json.loads(result.read_text(encoding="utf-8"))


# -- comparing and reporting -------------------------------------------------------------


def compare(reference: Path, other: Path) -> dict[str, Any]:
    """float32 (``reference``) against bfloat16 (``other``), query by query."""
    a, b = np.load(reference), np.load(other)
    diff = np.abs(a["scores"] - b["scores"])
    ious = []
    for x, y in zip(a["masks"], b["masks"], strict=True):
        mx, my = np.unpackbits(x, axis=-1), np.unpackbits(y, axis=-1)
        union = np.count_nonzero(mx | my)
        ious.append(np.count_nonzero(mx & my) / union if union else 1.0)
    ious = np.asarray(ious)
    order_a, order_b = np.argsort(-a["scores"]), np.argsort(-b["scores"])
    return {
        "queries": len(diff),
        "score_max_abs_diff": float(diff.max()),
        "score_mean_abs_diff": float(diff.mean()),
        "mask_iou_mean": float(ious.mean()),
        "mask_iou_median": float(np.median(ious)),
        "mask_iou_min": float(ious.min()),
        "queries_with_iou_ge_0.9": int((ious >= 0.9).sum()),
        "same_top10_queries": len(set(order_a[:10]) & set(order_b[:10])),
        "kept_at_0.5_float32": int((a["scores"] > 0.5).sum()),
        "kept_at_0.5_bfloat16": int((b["scores"] > 0.5).sum()),
    }


def table(report: dict[str, Any]) -> str:
    """The report as a markdown table (and the goal lines under it)."""
    runs = report["runs"]
    lines = [
        "| configuration | dtype | load (s) | per tile (s) | vision encoder (s) "
        "| second prompt (s) | peak RSS (MiB) | peak RSS inference (MiB) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in CONFIGS:
        run = runs.get(name)
        if run is None:
            continue
        encoder = f"{run['encoder_s']:.2f}" if "encoder_s" in run else "(in the tile)"
        inference = run.get("peak_inference_mib")
        inference = f"{inference:.0f}" if inference is not None else "n/a"
        lines.append(
            f"| {name} | {run['dtype']} | {run['load_s']:.1f} | {run['tile_s']:.2f} | {encoder} | "
            f"{run['second_prompt_s']:.2f} | {run['peak_mib']:.0f} | {inference} |"
        )
    goals = report.get("goals", {})
    if goals:
        lines.append("")
        lines.append(
            f"Best mode: {goals['best']}; {goals['speedup_vs_samgeo']:.2f}x samgeo per tile "
            f"(goal >= 4: {'met' if goals['speedup_met'] else 'not met'}); second prompt "
            f"{goals['second_prompt_s']:.2f} s (goal < 1 s: "
            f"{'met' if goals['second_prompt_met'] else 'not met'}); peak "
            f"{goals['peak_mib']:.0f} MiB (goal < 4096: "
            f"{'met' if goals['peak_met'] else 'not met'})."
        )
    if "bfloat16_vs_float32" in report:
        c = report["bfloat16_vs_float32"]
        lines.append(
            f"bfloat16 vs float32, {c['queries']} queries: max score difference "
            f"{c['score_max_abs_diff']:.4f} (mean {c['score_mean_abs_diff']:.4f}); mask IoU mean "
            f"{c['mask_iou_mean']:.3f}, median {c['mask_iou_median']:.3f}, min "
            f"{c['mask_iou_min']:.3f}; {c['same_top10_queries']}/10 of the top queries shared."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", type=Path, help="full-size checkpoint folder (built there if missing)"
    )
    parser.add_argument("--samgeo-dir", help="segment-geospatial 1.4.2 install (made if missing)")
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "sample.tif")
    parser.add_argument("--repeat", type=int, default=2, help="tiles per configuration (best)")
    parser.add_argument("--only", choices=CONFIGS, action="append", help="run only these")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny test model: checks the script, in seconds"
    )
    # Internal: one configuration, in a process of its own.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--tile", help=argparse.SUPPRESS)
    parser.add_argument("--answers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench-sam3-") as scratch:
        folder = Path(scratch)
        report: dict[str, Any] = {"machine": cpu_info(), "command": " ".join(sys.argv)}
        report["model"] = "tiny (a check of the script)" if args.tiny else "full size"
        if args.checkpoint is None:
            args.checkpoint = folder / "sam3-random"
        if not (args.checkpoint / "model.safetensors").is_file():
            report["build"] = spawn("build", args, folder)
        from transformers import Sam3VideoConfig

        size = Sam3VideoConfig.from_pretrained(
            args.checkpoint
        ).detector_config.vision_config.backbone_config.image_size
        np.save(folder / "tile.npy", tile(args.image, size))
        report["tile"] = {"source": str(args.image), "size": [size, size]}
        configs = args.only or list(CONFIGS)
        runs: dict[str, Any] = {}
        for name in configs:
            extra = {"tile": str(folder / "tile.npy")}
            if name.startswith("ours-"):
                extra["answers"] = str(folder / f"{name}.npz")
            if name == "samgeo":
                from support.samgeo import install_samgeo

                samgeo_dir = Path(args.samgeo_dir or folder / "segment-geospatial")
                extra["samgeo_dir"] = str(install_samgeo(samgeo_dir))
            runs[name] = spawn(name, args, folder, **extra)
        report["runs"] = runs
        # Other work on the machine slows every configuration: said with the numbers.
        report["machine"]["load_average_at_end"] = os.getloadavg()
        if {"ours-float32", "ours-bfloat16"} <= runs.keys():
            report["bfloat16_vs_float32"] = compare(
                folder / "ours-float32.npz", folder / "ours-bfloat16.npz"
            )
        ours = {k: v for k, v in runs.items() if k.startswith("ours-")}
        if ours:
            best = min(ours, key=lambda k: ours[k]["tile_s"])
            goals: dict[str, Any] = {"best": best}
            goals["second_prompt_s"] = ours[best]["second_prompt_s"]
            goals["second_prompt_met"] = goals["second_prompt_s"] < 1.0
            goals["peak_mib"] = ours[best]["peak_mib"]
            goals["peak_met"] = goals["peak_mib"] < 4096
            if "samgeo" in runs:
                goals["speedup_vs_samgeo"] = runs["samgeo"]["tile_s"] / ours[best]["tile_s"]
                goals["speedup_met"] = goals["speedup_vs_samgeo"] >= 4.0
                goals["second_prompt_vs_samgeo"] = (
                    runs["samgeo"]["second_prompt_s"] / goals["second_prompt_s"]
                )
                report["goals"] = goals
            else:
                report["goals_partial"] = goals
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    print()
    print(table(report))


if __name__ == "__main__":
    main()
