"""Time the classic algorithms alone (no HTTP, no polygons) on a 4096 x 4096 RGB GeoTIFF.

For each mode a fresh Python process reads the raster into an image chip, resets its
peak-memory counter, runs the classic backend once, and reports the wall time and the
peak resident memory *added* by the algorithm (``VmHWM`` after the run minus ``VmRSS``
before it, from ``/proc/self/status``; Linux only). Reading the raster and turning
masks into polygons are not included: see ``bench/bench_classic.py`` for the whole
request over HTTP.

The image is the procedural landscape of ``bench/bench_classic.py``, so both benchmarks
see the same pixels.

Usage::

    python bench/time_classic_algorithms.py              # 4096 x 4096, every mode
    python bench/time_classic_algorithms.py --size 2048 --only automatic water

Goal (docs/classic.md): each mode within 6 s and 500 MB on the 2-core development
machine at 4096 x 4096, leaving the rest of the 15 s / 1 GiB request budget to
reading, polygonizing and HTTP.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder is on sys.path: the landscape is bench_classic's.
from bench_classic import write_landscape

#: Mode name -> Python expression building the prompt (evaluated in the child).
MODES: dict[str, str] = {
    "automatic": "AutomaticPrompt()",
    "water": "TextPrompt('water', 0.5)",
    "vegetation": "TextPrompt('vegetation', 0.5)",
    "box": "PointBoxPrompt(boxes=((1800.0, 1500.0, 2300.0, 1900.0),))",
    "point": "PointBoxPrompt(points=((2100.0, 1000.0),), labels=(1,))",
}

_CHILD = """
import json, sys, time
from geolibre_ml.segment.backends.classic import ClassicBackend
from geolibre_ml.segment.prompts import AutomaticPrompt, PointBoxPrompt, TextPrompt
from geolibre_ml.segment.raster import RasterSource

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024

path, expression = sys.argv[1], sys.argv[2]
with RasterSource(path) as source:
    chip = source.read_chip()
backend = ClassicBackend("default")
prompt = eval(expression)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
before = status("VmRSS:")
start = time.perf_counter()
masks = backend.segment(chip, prompt)
seconds = time.perf_counter() - start
peak = status("VmHWM:")
print(json.dumps({"seconds": seconds, "extra_mib": peak - before, "objects": masks.count}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--only", nargs="*", choices=list(MODES), default=list(MODES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "landscape.tif"
        started = time.perf_counter()
        write_landscape(path, args.size)
        print(f"{args.size} x {args.size} landscape ({time.perf_counter() - started:.1f} s)")
        print()
        print("| mode | time (s) | extra peak memory (MiB) | objects |")
        print("| --- | ---: | ---: | ---: |")
        for mode in args.only:
            run = subprocess.run(
                [sys.executable, "-c", _CHILD, str(path), MODES[mode]],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(run.stdout.strip().splitlines()[-1])
            print(
                f"| {mode} | {result['seconds']:.2f} | {result['extra_mib']:.0f} | "
                f"{result['objects']} |"
            )


if __name__ == "__main__":
    main()
