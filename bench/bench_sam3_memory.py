"""Where SAM 3's loading memory goes: the process's own memory against the mapped checkpoint.

    python bench/bench_sam3_memory.py CHECKPOINT_DIR [--dtype bfloat16]

``VmHWM`` (what ``bench_sam3.py`` reports) counts every resident page, including the pages of
the safetensors file that transformers maps while loading: those are the page cache, shared
and reclaimable, not memory the process needs. This samples ``RssAnon`` (the process's own
memory) and ``RssFile`` (mapped files) every 10 ms while ``Sam3Backend`` loads, and prints
their peaks as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from pathlib import Path

FIELDS = ("RssAnon", "RssFile", "VmRSS")


def status_mib() -> dict[str, int]:
    """The ``FIELDS`` of /proc/self/status, in MiB."""
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) // 1024 for k in FIELDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    peaks = dict.fromkeys(FIELDS, 0)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for key, value in status_mib().items():
                peaks[key] = max(peaks[key], value)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    from geolibre_ml.segment.backends.sam3 import Sam3Backend

    started = time.perf_counter()
    backend = Sam3Backend(str(args.checkpoint), device="cpu", dtype=args.dtype)
    seconds = time.perf_counter() - started
    time.sleep(0.05)
    done.set()
    sampler.join()
    report = {
        "dtype": backend.dtype_name,
        "load_s": round(seconds, 1),
        "load_peak_mib": peaks,
        "after_load_mib": status_mib(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
