"""Take the README's screenshot of the web app: examples/sample.tif on the map, segmented.

Starts the real sidecar (which launches the model server, classic backend; with the test
support's environment: no SAM 3 weights), drives the page in headless Debian Chromium as a
user would (Processing → AI Segmentation, the image, text prompt "water", then automatic)
and saves ``docs/images/web-app.png``.
``python scripts/readme_screenshot.py [--out PATH] [--image RASTER]``
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "sample.tif"
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from support.browser import launch  # noqa: E402
from support.servers import run_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "web-app.png")
    parser.add_argument("--image", type=Path, default=IMAGE, help="the raster to segment")
    args = parser.parse_args()
    image = args.image.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="screenshot-") as tmp,
        run_server(["serve"], log_path=Path(tmp) / "sidecar.log", env={"TMPDIR": tmp}) as server,
        sync_playwright() as playwright,
    ):
        url = server.url
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(url + "/")
        page.evaluate("() => window.geolibre.ready")
        page.get_by_role("button", name="Processing").click()
        page.get_by_role("menuitem", name="AI Segmentation").click()
        dialog = page.get_by_role("dialog", name="AI Segmentation")
        status = dialog.get_by_role("status")
        dialog.get_by_label("Image", exact=True).set_input_files(str(image))
        expect(page.get_by_role("listitem", name=image.name)).to_be_visible(timeout=60_000)
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
        page.get_by_role("button", name=f"Zoom to {image.name}").click()
        page.wait_for_timeout(1500)
        page.wait_for_function("() => window.geolibre.map.loaded()")
        page.wait_for_timeout(500)
        page.screenshot(path=str(args.out))
        browser.close()
        # The model server the sidecar launched stops with it.
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{url}/shutdown", timeout=10)
        # The model server the sidecar launched stops with it.
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{url}/shutdown", timeout=10)
    print(args.out)


if __name__ == "__main__":
    main()
