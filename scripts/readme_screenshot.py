"""Take the README's screenshot of the web app: examples/sample.tif on the map, segmented.

Starts the real sidecar (which launches the model server, classic backend), drives the page
in headless Debian Chromium as a user would (Processing → AI Segmentation, the image, text
prompt "water", then automatic), closes the dialog, opens a polygon's properties and saves
``docs/images/web-app.png``. ``python scripts/readme_screenshot.py [--out PATH]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "sample.tif"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def sidecar() -> Iterator[str]:
    """The sidecar on a free loopback port, launching our model server on first use."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="screenshot-") as tmp:
        env = {**os.environ, "TMPDIR": tmp, "PYTHONPATH": str(ROOT / "src")}
        env.pop("GEOLIBRE_ML_SAMGEO_URL", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "geolibre_ml", "serve", "--port", str(port)],
            env=env,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(400):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.05)
            yield url
        finally:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(f"{url}/shutdown", timeout=10)
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "web-app.png")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with sidecar() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(url + "/")
        page.evaluate("() => window.geolibre.ready")
        page.get_by_role("button", name="Processing").click()
        page.get_by_role("menuitem", name="AI Segmentation").click()
        dialog = page.get_by_role("dialog", name="AI Segmentation")
        status = dialog.get_by_role("status")
        dialog.get_by_label("Image", exact=True).set_input_files(str(IMAGE))
        expect(page.get_by_role("listitem", name=IMAGE.name)).to_be_visible(timeout=60_000)
        dialog.get_by_label("Mode", exact=True).select_option("text")
        dialog.get_by_label("Prompt", exact=True).fill("water")
        dialog.get_by_role("button", name="Segment").click()
        expect(status).to_contain_text("to water", timeout=120_000)
        page.get_by_role("listitem", name="water").get_by_label("Colour of water").fill("#1f78ff")
        dialog.get_by_label("Mode", exact=True).select_option("automatic")
        dialog.get_by_role("button", name="Segment").click()
        expect(status).to_contain_text("to Automatic", timeout=120_000)
        page.get_by_role("listitem", name="Automatic").get_by_label("Opacity of Automatic").fill(
            "0.35"
        )
        page.get_by_role("button", name="Zoom to sample.tif").click()
        page.wait_for_timeout(1500)
        page.wait_for_function("() => window.geolibre.map.loaded()")
        page.wait_for_timeout(500)
        page.screenshot(path=str(args.out))
        browser.close()
    print(args.out)


if __name__ == "__main__":
    main()
