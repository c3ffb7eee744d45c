"""``/ml/images``: the model server's images through the sidecar."""

from __future__ import annotations

from pathlib import Path

import httpx

from support.servers import ServerProcess


def test_images_pass_through_the_sidecar(proxied: ServerProcess, scene_tif: Path) -> None:
    with httpx.Client(base_url=f"{proxied.url}/ml", timeout=60) as via:
        kept = via.post("/images", files={"file": ("scene.tif", scene_tif.read_bytes())})
        assert kept.status_code == 201, kept.text
        image_id = kept.json()["image_id"]
        assert via.get(f"/images/{image_id}").json() == kept.json()
        answer = via.post("/segment/text", data={"prompt": "water", "image_id": image_id})
        assert answer.status_code == 200, answer.text
        # Map tiles and the preview: PNG bytes, streamed through unchanged.
        tile = via.get(f"/images/{image_id}/tiles/0/0/0.png")
        assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
        assert tile.content.startswith(b"\x89PNG")
        preview = via.get(f"/images/{image_id}/preview.png", params={"max_size": 64})
        assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")
        assert via.delete(f"/images/{image_id}").status_code == 200
        assert via.get(f"/images/{image_id}").status_code == 404
