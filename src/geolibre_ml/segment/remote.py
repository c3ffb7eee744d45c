"""Rasters read over HTTP(S) by range requests, through GDAL's ``/vsicurl/``.

A cloud-optimised GeoTIFF is never downloaded whole: GDAL fetches its header, then
only the tiles (or overview tiles) a read touches. This module turns a URL into the
path GDAL opens, probes the URL once (one ranged GET of its first bytes: status,
validators, size, file signature) so that a missing or non-GeoTIFF URL is answered
with a clear message before GDAL is involved, and removes credentials from anything
that may be shown.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import SourceRefused, UnreadableImage

#: The prefix GDAL reads an http(s) URL through.
VSICURL = "/vsicurl/"

#: Schemes a URL source may have.
URL_SCHEMES = ("http", "https")

#: Seconds to wait for the probe's answer.
PROBE_TIMEOUT_S = 30.0

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")

#: GDAL settings for remote reads, set once unless the operator set them: no directory
#: listing of the URL's folder on open (one request saved, and a folder's listing is
#: none of our business), and no cache of a URL's blocks kept after it is closed, so
#: that a file changed on its server is read anew on the next request.
GDAL_DEFAULTS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_NON_CACHED": VSICURL,
    "GDAL_HTTP_MAX_RETRY": "2",
}


def configure_gdal() -> None:
    """Apply :data:`GDAL_DEFAULTS` to this process (environment settings GDAL reads)."""
    for key, value in GDAL_DEFAULTS.items():
        os.environ.setdefault(key, value)


def url_scheme(text: str) -> str | None:
    """The lower-cased scheme of ``text`` when it looks like a URL (``name:``), else None.

    A single letter followed by ``:`` is a Windows drive, not a scheme.
    """
    match = _SCHEME.match(text)
    if match is None or len(match.group(1)) == 1:
        return None
    return match.group(1).lower()


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` is a ``/vsicurl/`` path (a str: :class:`Path` would fold ``//``)."""
    return isinstance(path, str) and path.startswith(VSICURL)


def redact(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it removed."""
    return _USERINFO.sub(r"\1", text)


def url_name(url: str) -> str:
    """The name shown for a URL source: the last part of its path (no query, no
    credentials), as an upload's file name is shown."""
    parts = urllib.parse.urlsplit(url)
    name = parts.path.rstrip("/").rsplit("/", 1)[-1]
    return urllib.parse.unquote(name) or parts.hostname or "remote.tif"


def check_url(url: str) -> str:
    """``url`` checked to be an http(s) URL with a host; returns the ``/vsicurl/`` path.

    Raises:
        SourceRefused: another scheme (file:, ftp:, ...).
        InvalidRequest-like UnreadableImage: no host.
    """
    scheme = url_scheme(url)
    if scheme not in URL_SCHEMES:
        raise SourceRefused(
            f"source URLs must be http:// or https:// (got a {scheme}: URL). Give the URL "
            "of a cloud-optimised GeoTIFF on a web server, or upload the file as 'file'.",
            fields="source",
        )
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise UnreadableImage(
            f"source {redact(url)!r} has no host name: give a full URL such as "
            "https://example.com/scene.tif.",
            fields="source",
        )
    configure_gdal()
    return VSICURL + url


@dataclass(frozen=True)
class UrlProbe:
    """What one ranged GET of a URL's first bytes told.

    Attributes:
        etag, last_modified: the server's validators, or None.
        size: the file's size in bytes (from ``Content-Range``/``Content-Length``), or None.
        head: the first bytes of the file (up to 16).
    """

    etag: str | None
    last_modified: str | None
    size: int | None
    head: bytes

    def content_key(self, url: str) -> str | None:
        """A cache key that changes when the file does: the URL and its validators; None
        (do not cache) when the server gives neither an ETag nor a Last-Modified date,
        since the size alone does not change with every edit."""
        if self.etag is None and self.last_modified is None:
            return None
        digest = hashlib.blake2b(digest_size=16)
        for part in (url, self.etag or "", self.last_modified or "", str(self.size)):
            digest.update(part.encode() + b"\0")
        return "url:" + digest.hexdigest()


def probe(url: str, *, timeout: float = PROBE_TIMEOUT_S) -> UrlProbe:
    """GET the first 16 bytes of ``url`` (a ranged request) and read its validators.

    Credentials in the URL are sent as HTTP basic authentication, as GDAL sends them.

    Raises:
        UnreadableImage: the server cannot be reached, answers an error status, or the
            file is not a GeoTIFF; the message never contains the URL's credentials.
    """
    parts = urllib.parse.urlsplit(url)
    shown = redact(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    bare = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    if parts.scheme.lower() not in URL_SCHEMES:  # never file: or ftp: (see check_url)
        check_url(url)
    request = urllib.request.Request(bare, headers={"Range": "bytes=0-15"})  # noqa: S310
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            head = response.read(16)
            headers = response.headers
            status = response.status
    except urllib.error.HTTPError as exc:
        raise UnreadableImage(
            f"source {shown!r} cannot be read: its server answered {exc.code} "
            f"{exc.reason}. Check the URL (and its access rights).",
            fields="source",
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UnreadableImage(
            f"source {shown!r} cannot be read: {redact(str(reason))}. Check the URL and "
            "that this server can reach it.",
            fields="source",
        ) from None
    size = _size(headers.get("Content-Range"), headers.get("Content-Length"), status)
    if not head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        raise UnreadableImage(
            f"source {shown!r} is not a GeoTIFF (its first bytes say otherwise): a URL "
            "source must be a (cloud-optimised) GeoTIFF; upload other images as 'file'.",
            fields="source",
        )
    return UrlProbe(headers.get("ETag"), headers.get("Last-Modified"), size, head)


def _size(content_range: str | None, content_length: str | None, status: int) -> int | None:
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    if status == 200 and content_length and content_length.isdigit():
        # The server ignored the range and sent the whole file's length.
        return int(content_length)
    return None
