"""A request's ``source``: an http(s) URL read by range requests, or a local path under
the folders of ``GEOLIBRE_ML_DATA_ROOTS``, used in place of an uploaded ``file``.

Nothing is copied: a URL is opened through GDAL's ``/vsicurl/``, a local file where it
lies. A local path is taken only when it resolves (symbolic links followed, ``..``
normalised) inside an allowed folder; the check happens on the resolved path, and the
resolved path is what is opened, so a link cannot lead the read elsewhere.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from geolibre_ml.segment import remote
from geolibre_ml.segment.errors import InvalidRequest, SourceRefused, UnreadableImage

#: The variable listing the folders a local ``source`` may lie under.
DATA_ROOTS_VAR = "GEOLIBRE_ML_DATA_ROOTS"


@dataclass(frozen=True)
class OpenedSource:
    """A ``source`` ready to read.

    Attributes:
        path: what the pipeline opens: a ``/vsicurl/`` str, or the resolved local path.
        name: the name shown in messages and in features' ``source`` (a base name).
        content_key: the prepared-image cache key (changes with the content), or None
            when the content cannot be told apart (then nothing is cached).
    """

    path: str | Path
    name: str
    content_key: str | None


def data_roots() -> list[Path]:
    """The resolved folders of ``GEOLIBRE_ML_DATA_ROOTS`` (``:``-separated; empty parts
    ignored); none when it is unset."""
    raw = os.environ.get(DATA_ROOTS_VAR, "")
    return [Path(part).expanduser().resolve() for part in raw.split(os.pathsep) if part.strip()]


def open_source(text: str) -> OpenedSource:
    """Check ``source`` and say how to read it (blocking: a URL is probed over the network).

    Raises:
        SourceRefused: another URL scheme, a GDAL virtual path, a local path outside the
            data roots, or local paths with no roots configured (403).
        UnreadableImage: a URL that cannot be read, a missing file (400).
        InvalidRequest: an empty or relative path (400).
    """
    text = text.strip()
    if not text:
        raise InvalidRequest(
            "source is empty: give an http(s) URL of a GeoTIFF, or a local path.", fields="source"
        )
    if remote.url_scheme(text) is not None:
        return _open_url(text)
    return _open_local(text)


def _open_url(url: str) -> OpenedSource:
    vsi_path = remote.check_url(url)
    probed = remote.probe(url)
    return OpenedSource(vsi_path, remote.url_name(url), probed.content_key(url))


def _refused_local() -> SourceRefused:
    return SourceRefused(
        f"This local source path is not allowed: the server reads local files only under the "
        f"folders listed in {DATA_ROOTS_VAR} (':'-separated), and this path is not inside "
        f"one of them (symbolic links and '..' are resolved first). Move the file under an "
        f"allowed folder, add its folder to {DATA_ROOTS_VAR} on the server, or upload it as "
        "'file'.",
        fields="source",
    )


def _open_local(text: str) -> OpenedSource:
    if text.startswith("/vsi"):
        raise SourceRefused(
            "source may not be a GDAL virtual file system path (/vsi...): give an http(s) "
            "URL, or a local path under the server's data folders.",
            fields="source",
        )
    candidate = Path(text)
    if not candidate.is_absolute():
        raise InvalidRequest(
            "A local source must be an absolute path (e.g. /data/scene.tif), or an http(s) URL.",
            fields="source",
        )
    roots = data_roots()
    if not roots:
        raise SourceRefused(
            f"This server reads no local paths: {DATA_ROOTS_VAR} is not set. Set it on the "
            "server to the folders (':'-separated) that requests may read, or upload the "
            "file as 'file', or give an http(s) URL.",
            fields="source",
        )
    # Resolved before the check: symbolic links followed, '..' removed.
    resolved = candidate.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise _refused_local()
    name = resolved.name or "source"
    try:
        info = resolved.stat()
    except OSError:
        raise UnreadableImage(
            f"source {text!r} does not exist (or cannot be read) under the server's data "
            "folders: check the path.",
            fields="source",
        ) from None
    if not resolved.is_file():
        raise UnreadableImage(
            f"source {text!r} is not a file: give the path of the raster itself.",
            fields="source",
        )
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{resolved}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    return OpenedSource(resolved, name, "path:" + digest.hexdigest())
