"""Benchmark: the classic model over HTTP, this tree against another commit, in one run.

Both are measured on the same 4096 x 4096 landscape (``bench_classic.write_landscape``),
each request to a fresh ``python -m geolibre_ml model-server`` process, alternating
before/after so that a busy moment of the machine hits both alike. Each figure is the
best of ``--repeat`` runs: wall time of the request, and the server's peak resident
memory (VmHWM).

Usage (the other commit checked out beside this one)::

    git worktree add ../before <commit>
    python bench/bench_before_after.py --before ../before/src --repeat 3
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_classic import RUNS, Measure, over_http, write_landscape

HERE = Path(__file__).resolve().parents[1] / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the other commit's src/")
    parser.add_argument("--size", type=int, default=4096, help="image edge in pixels")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--image", type=Path, help="use this GeoTIFF instead of generating one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-before-after-") as folder:
        tmp = Path(folder)
        image = args.image or write_landscape(tmp / "landscape.tif", args.size)
        rows = []
        for name, (mode, data, _short) in RUNS.items():
            best: dict[str, Measure] = {}
            for _ in range(args.repeat):
                for label, source in (("before", args.before.resolve()), ("after", HERE)):
                    measure, _startup = over_http(image, mode, data, tmp, source)
                    kept = best.get(label)
                    if kept is None:
                        best[label] = measure
                    else:
                        best[label] = Measure(
                            min(kept.seconds, measure.seconds),
                            min(kept.peak_mib, measure.peak_mib),
                            measure.detail,
                        )
            rows.append((name, best["before"], best["after"]))
    print(
        f"{args.size} x {args.size} RGB GeoTIFF, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}, best of {args.repeat}.\n"
    )
    print(
        "| run | before: time (s) | before: peak RSS (MiB) | after: time (s) | "
        "after: peak RSS (MiB) | time ratio (after/before) | memory ratio | answer after |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, before, after in rows:
        print(
            f"| {name} | {before.seconds:.2f} | {before.peak_mib:.0f} | {after.seconds:.2f} | "
            f"{after.peak_mib:.0f} | {after.seconds / before.seconds:.2f} | "
            f"{after.peak_mib / before.peak_mib:.2f} | {after.detail} |"
        )


if __name__ == "__main__":
    main()
