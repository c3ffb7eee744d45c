"""One large raster through the CLI: a per-tile bar, and Ctrl-C leaves no partial file."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from support.rasters import write_rgb_scene


def _read_until(fd: int, pattern: re.Pattern[str], timeout: float) -> str:
    """What the terminal shows until ``pattern`` appears (or ``timeout`` seconds)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pattern.search(seen):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096).decode(errors="replace")
            except OSError:  # the process closed its end
                break
    return seen


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_a_large_raster_shows_a_tile_bar_and_ctrl_c_writes_nothing(tmp_path: Path) -> None:
    write_rgb_scene(tmp_path / "big.tif", 1152)
    master, slave = pty.openpty()
    # A terminal 120 columns wide (a new pty has none, and tqdm draws nothing in 0).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    args = [
        *("big.tif", "-o", "out.gpkg", "--mode", "automatic"),
        *("--tile-size", "256", "--tile-overlap", "32"),
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "geolibre_ml", "segment", *args],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,  # a terminal, as at a prompt: the bars are drawn
    )
    os.close(slave)
    try:
        # 5 x 5 tiles of 256 px (32 px overlap) over 1152 px: the bar counts them.
        shown = _read_until(master, re.compile(r"tiles:.*\b([2-9]|1\d)/25\b"), timeout=60)
        assert re.search(r"tiles:.*\b\d+/25\b", shown), shown
        assert re.search(r"\d+(\.\d+)?(s/tile|tile/s)", shown), shown  # its rate
        assert re.search(r"<\d\d:\d\d", shown), shown  # the time left
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        shown += _read_until(master, re.compile(r"interrupted"), timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    assert "interrupted" in shown
    # No partial answer, no staging folder, nothing else left next to the input.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]


def test_tile_options_are_checked(tmp_path: Path, cli, scene_tif: Path) -> None:
    result = cli(scene_tif, "-o", "out.geojson", "--tile-size", "100", "--tile-overlap", "100")
    assert result.returncode == 2
    assert "--tile-overlap" in result.stderr and "--tile-size" in result.stderr
    result = cli(scene_tif, "-o", "out.geojson", "--tile-size", "0")
    assert result.returncode == 2 and "tile size" in result.stderr
