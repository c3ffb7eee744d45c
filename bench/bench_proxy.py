"""What the sidecar costs: the same uploads straight to the model server and through the sidecar.

    python bench/bench_proxy.py [--repeat 7] [--size-mb 50] [--out FILE]

One run starts a model server and a sidecar in front of it (``GEOLIBRE_ML_SAMGEO_URL``), as
real processes on loopback, and measures:

1. **Transfer**: a valid ~50 MB GeoTIFF POSTed to ``/segment/text`` with
   ``output_format=none``, which the model server refuses (400) only after it has received
   and parsed the whole upload, so the time is the transfer's. Direct and proxied requests
   alternate; the median of ``--repeat`` runs is kept. Goal: proxied / direct <= 1.15.
2. **Segmentation**: the same image, classic text prompt "water", answered in GeoJSON
   (median of 3), to show the proxy's share of a real request.
3. **Memory**: a fresh sidecar's resident memory while it streams an upload of just under
   100 MiB (the limit): ``VmRSS`` before, then the peak (``VmHWM``, reset through
   ``/proc/PID/clear_refs`` when allowed, and ``VmRSS`` sampled every 2 ms). Goal: growth
   under 64 MiB.

For scale, the transfer is also timed through a raw asyncio TCP relay (bytes copied from
socket to socket, no HTTP at all), the floor for any proxy written in Python on the same
machine.

It prints a Markdown report (machine, command, table); ``--out`` also writes it to a file.
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import rasterio
from rasterio.transform import from_origin

MIB = 1024 * 1024
LIMIT = 100 * MIB
BOUNDARY = "geolibre-ml-bench-boundary"


# --- inputs -----------------------------------------------------------------------------------


def write_raster(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """An uncompressed, striped 3-band uint8 GeoTIFF (UTM 33N, 1 m): soil, a lake, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[0:height, 0:width]
    lake = ((yy - height * 0.4) / (height * 0.2)) ** 2 + (
        (xx - width * 0.35) / (width * 0.2)
    ) ** 2 < 1
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500000, 4100000, 1, 1),
        photometric="RGB",
    ) as dst:
        for band, (soil, water) in enumerate([(150, 30), (120, 60), (90, 70)], start=1):
            plane = np.full((height, width), soil, np.uint8)
            plane[lake] = water
            noise = rng.integers(0, 12, size=(height, width), dtype=np.uint8)
            dst.write(plane + noise, band)
    return path


def multipart(path: Path, fields: dict[str, str]) -> bytes:
    """A multipart/form-data body: ``file`` (the raster), then ``fields``."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: image/tiff\r\n\r\n".encode(),
        path.read_bytes(),
        b"\r\n",
    ]
    for name, value in fields.items():
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """``python -m geolibre_ml ARGS`` on a free port: yields its URL and pid."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "geolibre_ml",
                *args,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _relay(listen: int, target: int) -> None:
    """Copy bytes both ways between each client and ``target``: no parsing, 1 MiB reads."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(MIB):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )

    relay = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with relay:
        await relay.serve_forever()


@contextlib.contextmanager
def relay(target_url: str) -> Iterator[str]:
    """A raw TCP relay to ``target_url`` in its own process; yields its URL."""
    port = free_port()
    target = target_url.rsplit(":", 1)[1]
    process = subprocess.Popen([sys.executable, __file__, "--relay", f"{port}:{target}"])
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the relay did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def proc_status(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` memory field, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


# --- measurements -----------------------------------------------------------------------------


def post(client: httpx.Client, url: str, body: bytes) -> tuple[float, httpx.Response]:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    started = time.perf_counter()
    answer = client.post(url, content=body, headers=headers)
    _ = answer.content
    return time.perf_counter() - started, answer


def compare(
    client: httpx.Client, urls: dict[str, str], body: bytes, repeat: int, expect: int
) -> dict[str, list[float]]:
    """Each URL in turn, ``repeat`` rounds (the order rotates); their times in seconds."""
    times: dict[str, list[float]] = {name: [] for name in urls}
    order = list(urls.items())
    for i in range(repeat):
        for name, url in order[i % len(order) :] + order[: i % len(order)]:
            seconds, answer = post(client, url, body)
            if answer.status_code != expect:
                raise RuntimeError(f"{name}: HTTP {answer.status_code}: {answer.text[:300]}")
            times[name].append(seconds)
    return times


def memory_while_streaming(sidecar_pid: int, url: str, body: bytes) -> dict[str, int]:
    """The sidecar's resident memory before and at its peak while ``body`` goes through it."""
    with httpx.Client(timeout=600) as client:
        post(client, url, b"--x--")  # warm up: imports, the client pool
        time.sleep(0.5)
        before = proc_status(sidecar_pid, "VmRSS")
        reset = True
        try:
            Path(f"/proc/{sidecar_pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        except OSError:
            reset = False
        peak_sampled = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_sampled
            while not done.is_set():
                peak_sampled = max(peak_sampled, proc_status(sidecar_pid, "VmRSS"))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            _, answer = post(client, url, body)
        finally:
            done.set()
            sampler.join()
        hwm = proc_status(sidecar_pid, "VmHWM")
    peak = max(peak_sampled, hwm) if reset else peak_sampled
    return {
        "before": before,
        "peak": peak,
        "growth": peak - before,
        "status": answer.status_code,
        "hwm_reset": int(reset),
    }


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = proc_meminfo_total()
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {memory / 2**30:.0f} GiB memory; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"httpx {httpx.__version__}"
    )


def proc_meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="transfer runs per path (median)")
    parser.add_argument("--size-mb", type=float, default=50.0, help="upload size in MB (10^6)")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("--relay", help=argparse.SUPPRESS)  # LISTEN:TARGET, run the relay
    args = parser.parse_args()
    if args.relay:
        listen, target = (int(v) for v in args.relay.split(":"))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_relay(listen, target))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        tmpdir = Path(tmp)
        side = int((args.size_mb * 1e6 / 3) ** 0.5)
        image = write_raster(tmpdir / "upload.tif", side, side)
        big_height = (LIMIT - 64 * 1024) // (6000 * 3)
        big = write_raster(tmpdir / "upload-100mib.tif", 6000, big_height, seed=1)
        refused = {"prompt": "water", "model_version": "classic", "output_format": "none"}
        transfer_body = multipart(image, refused)
        segment_body = multipart(image, {"prompt": "water", "model_version": "classic"})
        big_body = multipart(big, refused)
        assert len(big_body) <= LIMIT, len(big_body)

        with server(["model-server"], tmpdir / "model-server.log") as (model_url, _):
            env = {"GEOLIBRE_ML_SAMGEO_URL": model_url, "GEOLIBRE_SIDECAR_TOKEN": ""}
            with (
                server(["serve"], tmpdir / "sidecar.log", env) as (sidecar_url, _),
                relay(model_url) as relay_url,
                httpx.Client(timeout=600) as client,
            ):
                urls = {
                    "direct": f"{model_url}/segment/text",
                    "sidecar": f"{sidecar_url}/ml/segment/text",
                    "relay": f"{relay_url}/segment/text",
                }
                for url in urls.values():
                    post(client, url, transfer_body)  # warm-up
                transfer = compare(client, urls, transfer_body, args.repeat, 400)
                del urls["relay"]
                segmentation = compare(client, urls, segment_body, 3, 200)
            # A fresh sidecar, so that the earlier runs do not raise its baseline.
            with server(["serve"], tmpdir / "sidecar-memory.log", env) as (sidecar_url, pid):
                memory = memory_while_streaming(pid, f"{sidecar_url}/ml/segment/text", big_body)
        if memory["status"] != 400:
            raise RuntimeError(f"the 100 MiB upload answered HTTP {memory['status']}")

    median = statistics.median
    direct, proxied, relayed = transfer["direct"], transfer["sidecar"], transfer["relay"]
    seg_direct, seg_proxied = segmentation["direct"], segmentation["sidecar"]
    ratio = median(proxied) / median(direct)
    mb = len(transfer_body) / 1e6

    def speed(times: list[float]) -> str:
        return f"{median(times):.3f} s ({mb / median(times):.0f} MB/s)"

    lines = [
        f"Machine: {machine()}.",
        f"Command: `python bench/bench_proxy.py --repeat {args.repeat} --size-mb {args.size_mb:g}`"
        f" ({datetime.now(timezone.utc):%Y-%m-%d}).",
        "",
        "| measurement | direct to the model server | through the proxy | ratio | goal | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
        f"| {mb:.1f} MB upload, refused after reading (median of {args.repeat}), sidecar "
        f"| {speed(direct)} | {speed(proxied)} | {ratio:.2f} | <= 1.15 "
        f"| {'yes' if ratio <= 1.15 else '**no**'} |",
        f"| the same through a raw TCP relay (no HTTP; the floor for a Python proxy) "
        f"| | {speed(relayed)} | {median(relayed) / median(direct):.2f} | | |",
        f'| {mb:.1f} MB classic text "water", GeoJSON (median of 3), sidecar '
        f"| {median(seg_direct):.2f} s | {median(seg_proxied):.2f} s "
        f"| {median(seg_proxied) / median(seg_direct):.2f} | | |",
        f"| sidecar memory while streaming {len(big_body) / MIB:.1f} MiB "
        f"| | {memory['before'] / MIB:.1f} MiB before, {memory['peak'] / MIB:.1f} MiB peak "
        f"| +{memory['growth'] / MIB:.1f} MiB | < 64 MiB "
        f"| {'yes' if memory['growth'] < 64 * MIB else '**no**'} |",
        "",
        "Transfer times (s), direct: "
        + ", ".join(f"{t:.3f}" for t in direct)
        + "; sidecar: "
        + ", ".join(f"{t:.3f}" for t in proxied)
        + "; relay: "
        + ", ".join(f"{t:.3f}" for t in relayed)
        + "."
        + ("" if memory["hwm_reset"] else " (VmHWM could not be reset: peak from sampling only.)"),
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
