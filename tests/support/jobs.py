"""Helpers for the jobs tests: submitting, waiting, reading server-sent events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

FINAL = ("done", "failed", "cancelled")


def submit(
    client: httpx.Client,
    mode: str,
    image: Path,
    data: dict[str, Any] | None = None,
    *,
    prefix: str = "",
) -> dict[str, str]:
    """POST ``image`` to ``{prefix}/jobs/segment/{mode}``; the 202 answer's body."""
    response = client.post(
        f"{prefix}/jobs/segment/{mode}",
        files={"file": (image.name, image.read_bytes())},
        data=data or {},
    )
    assert response.status_code == 202, response.text
    return response.json()


def status(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """``GET /jobs/{id}``'s body (asserting 200)."""
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(
    client: httpx.Client, job_id: str, states: tuple[str, ...], timeout: float = 60
) -> dict[str, Any]:
    """Poll the job until its status is one of ``states``; its status then."""
    deadline = time.monotonic() + timeout
    while True:
        body = status(client, job_id)
        if body["status"] in states:
            return body
        assert time.monotonic() < deadline, f"job {job_id} still {body} after {timeout} s"
        assert body["status"] not in FINAL, f"job {job_id} ended as {body}, wanted {states}"
        time.sleep(0.02)


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` per server-sent event in ``lines`` (comments skipped)."""
    name, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data.append(line.partition(":")[2].strip())


def all_events(client: httpx.Client, url: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of a job's stream at ``url``, until it ends."""
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(sse_events(response.iter_lines()))
