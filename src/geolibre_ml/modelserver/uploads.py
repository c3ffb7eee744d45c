"""Uploads on disk: each request gets a private temporary directory, removed on every path."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

CHUNK = 1024 * 1024


def safe_name(filename: str | None) -> str:
    """The upload's base name, reduced to something safe to create on disk."""
    base = Path((filename or "").replace("\\", "/")).name
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in base).lstrip(".")
    return keep[:120] or "upload"


@contextlib.asynccontextmanager
async def saved_upload(upload: UploadFile) -> AsyncIterator[Path]:
    """Copy ``upload`` into a fresh temporary directory; remove it when the block exits."""
    workdir = Path(tempfile.mkdtemp(prefix="geolibre-ml-"))
    try:
        path = workdir / safe_name(upload.filename)
        with path.open("wb") as out:
            while chunk := await upload.read(CHUNK):
                await run_in_threadpool(out.write, chunk)
        yield path
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
