"""How fast a click answers in the web app's Box / point mode, once the image is encoded.

The page uploads the image once (``POST /ml/images``); each click or finished box then
posts ``/ml/segment/predict`` with the ``image_id`` and the map coordinates, and the
answer replaces the preview. The first prompt on a part of the image encodes that tile;
the goal (issue 10) is that every later click answers in under 1 s.

Two measures, on the tiny random SAM 3 checkpoint the tests build (``tests/support``):

- **HTTP**: the page's request, sent by this script through the real sidecar to the real
  model server: the first prompt (encoding the tile) and then ``--clicks`` more clicks.
- **browser**: the real page in headless Chromium (Playwright, Debian's
  ``/usr/bin/chromium``): from the mouse click on the map to the answer's arrival in the
  page (``answer_in``), and to the preview's message in the dialog (``shown``: the page's
  own work, answer parsed and layer drawn, counted too).

Prints one JSON object. ``python bench/bench_click.py [--clicks 20] [--no-browser]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "bench")]

from bench_classic import model_server, server_env  # noqa: E402
from support.browser import launch  # noqa: E402
from support.servers import run_server  # noqa: E402

IMAGE = ROOT / "examples" / "sample.tif"


def summary(seconds: list[float]) -> dict[str, float]:
    """Median, 90th percentile and worst of ``seconds``, in milliseconds."""
    ordered = sorted(seconds)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "n": len(ordered),
    }


def over_http(url: str, clicks: int) -> dict[str, object]:
    """The page's requests, timed: upload once, a first click, then ``clicks`` more."""
    with httpx.Client(base_url=f"{url}/ml", timeout=600) as http:
        started = time.perf_counter()
        kept = http.post("/images", files={"file": (IMAGE.name, IMAGE.read_bytes())})
        kept.raise_for_status()
        upload = time.perf_counter() - started
        info = kept.json()
        west, south, east, north = info["bounds_4326"]

        def click(i: int) -> float:
            # Clicks wander about the middle of the image, as a user's do.
            lon = west + (east - west) * (0.45 + 0.01 * (i % 10))
            lat = south + (north - south) * (0.45 + 0.01 * (i % 7))
            data = {
                "image_id": info["image_id"],
                "model_version": "sam3",
                "point_coords": json.dumps([[lon, lat]]),
                "point_labels": json.dumps([1]),
                "point_crs": "EPSG:4326",
                "output_crs": "EPSG:4326",
            }
            begun = time.perf_counter()
            answer = http.post("/segment/predict", data=data)
            if answer.status_code not in (200, 404):  # 404: no objects found, an answer too
                raise RuntimeError(f"predict answered {answer.status_code}: {answer.text}")
            return time.perf_counter() - begun

        first = click(0)
        later = [click(i) for i in range(1, clicks + 1)]
        http.delete(f"/images/{info['image_id']}")
    return {
        "upload_s": round(upload, 3),
        "first_click_s": round(first, 3),
        "later_clicks": summary(later),
    }


def in_the_browser(url: str, clicks: int) -> dict[str, object]:
    """The real page: from a click on the map to the preview's message."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(url + "/")
        page.wait_for_function("() => window.geolibre && window.geolibre.ready")
        page.evaluate("() => window.geolibre.ready")
        page.get_by_role("button", name="Processing").click()
        page.get_by_role("menuitem", name="AI Segmentation").click()
        dialog = page.get_by_role("dialog", name="AI Segmentation")
        dialog.get_by_label("Model", exact=True).select_option("sam3")
        dialog.get_by_label("Image", exact=True).set_input_files(str(IMAGE))
        page.get_by_role("listitem", name=IMAGE.name).wait_for(timeout=120_000)
        dialog.get_by_label("Mode", exact=True).select_option("predict")
        dialog.get_by_role("radio", name="Point").check()
        status = dialog.get_by_role("status")
        canvas = page.locator("#map canvas")
        box = canvas.bounding_box()
        assert box is not None
        times, answers = [], []
        for i in range(clicks + 1):
            before = status.inner_text()
            x = box["x"] + box["width"] * (0.5 + 0.01 * (i % 5))
            y = box["y"] + box["height"] * (0.5 + 0.01 * (i % 3))
            with page.expect_response(lambda r: "/ml/segment/predict" in r.url) as answer:
                begun = time.perf_counter()
                page.mouse.click(x, y)
            answer.value.finished()
            answers.append(time.perf_counter() - begun)
            # The answer is in; wait until the page has said so (message changed or redrawn).
            page.wait_for_function(
                "([el, old]) => el.textContent !== old && !el.closest('[aria-busy=true]')",
                arg=[status.element_handle(), before],
                timeout=60_000,
            )
            times.append(time.perf_counter() - begun)
            dialog.get_by_role("button", name="Clear prompts").click()
        browser.close()
    return {
        "first_click_s": round(times[0], 3),
        "later_clicks_answer_in": summary(answers[1:]),
        "later_clicks_shown": summary(times[1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=20, help="clicks after the first")
    parser.add_argument("--no-browser", action="store_true", help="HTTP only")
    args = parser.parse_args()
    from support.sam3_checkpoint import build_checkpoint

    with tempfile.TemporaryDirectory(prefix="bench-click-") as scratch:
        folder = Path(scratch)
        checkpoint = build_checkpoint(folder / "sam3-tiny", tiny=True)
        env = server_env(folder / "tmp")
        (folder / "tmp").mkdir()
        env.update(GEOLIBRE_ML_SAM3_MODEL=str(checkpoint), GEOLIBRE_ML_DEVICE="cpu")
        result: dict[str, object] = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "image": f"{IMAGE.relative_to(ROOT)} (512 x 512, 4 bands)",
            "model": "tiny random SAM 3 (tests/support/sam3_checkpoint.py, 112 px input)",
        }
        with (
            model_server(env) as (_, backend, _startup),
            run_server(
                ["serve"],
                log_path=folder / "sidecar.log",
                env={"GEOLIBRE_ML_SAMGEO_URL": backend, "TMPDIR": str(folder / "tmp")},
            ) as sidecar,
        ):
            result["http"] = over_http(sidecar.url, args.clicks)
            if not args.no_browser:
                result["browser"] = in_the_browser(sidecar.url, args.clicks)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
