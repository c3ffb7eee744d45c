"""Which model server the sidecar talks to, and how to reach or launch it.

In order: ``GEOLIBRE_ML_SAMGEO_URL`` (reach it, launch nothing); ``GEOLIBRE_ML_SAMGEO_CMD``;
``samgeo-api`` on ``PATH``; else our own model server, run with the sidecar's own Python
(``python -m geolibre_ml model-server``) so that it works whatever ``PATH`` holds.
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import sys
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from .config import Settings
from .security import has_authority, redact_url

SAMGEO_API = "samgeo-api"
ENGINE_MODULES = ("numpy", "rasterio")


@dataclass(frozen=True)
class Target:
    """A model server's address, split so that its credentials never travel in a URL string.

    Attributes:
        base: ``scheme://host[:port][/prefix]``, without user info, query or trailing slash.
        auth: user name and password for HTTP basic authentication, from the URL's user info.
        params: query parameters of the configured URL, added to every request.
        shown: the URL as answers and logs show it (credentials hidden).
    """

    base: str
    auth: tuple[str, str] | None = None
    params: tuple[tuple[str, str], ...] = ()
    shown: str = ""

    @classmethod
    def parse(cls, url: str) -> Target:
        """Split ``url`` (``http(s)://[user:password@]host[:port][/prefix][?query]``).

        Raises:
            ValueError: not an http(s) URL with a host; the message shows the URL redacted.
        """
        text = url.strip()
        if not has_authority(text):
            # ``user:secret@host:8000`` parses as scheme ``user``: nothing of it can be shown.
            raise ValueError(
                "it is not a URL that starts with http:// or https:// (the value is not shown, "
                "as it may hold a password)."
            )
        shown = redact_url(text)
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise ValueError(f"{shown} is not a valid URL.") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{shown} is not an http:// or https:// URL with a host name.")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host + (f":{port}" if port is not None else "")
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        auth = None
        if parts.username is not None or parts.password is not None:
            auth = (unquote(parts.username or ""), unquote(parts.password or ""))
        params = tuple(parse_qsl(parts.query, keep_blank_values=True))
        return cls(base, auth, params, shown)

    @classmethod
    def local(cls, port: int) -> Target:
        """A model server this sidecar launched on a loopback port."""
        base = f"http://127.0.0.1:{port}"
        return cls(base, shown=base)

    def url(self, path: str) -> str:
        """The full URL of ``path`` (which starts with ``/``) on this server."""
        return self.base + path


@dataclass(frozen=True)
class LaunchPlan:
    """How to start a model server on first use.

    Attributes:
        command: the program and its arguments (``--host``/``--port`` are appended).
        source: where the command comes from, in words, for messages.
        serves_sam_only: the command is a ``samgeo-api``, whose models are SAM ones.
        problem: why the command cannot run here, with what to do; ``None`` when it can.
    """

    command: tuple[str, ...]
    source: str
    serves_sam_only: bool = False
    problem: str | None = None


def engine_installed() -> bool:
    """Whether the segmentation engine our model server needs is importable (not imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ENGINE_MODULES)


def resolve(settings: Settings) -> Target | LaunchPlan:
    """The backend ``settings`` designate: an address to reach, or a command to launch.

    Raises:
        ValueError: ``GEOLIBRE_ML_SAMGEO_URL`` is not a usable URL (message redacted).
    """
    if settings.samgeo_url:
        return Target.parse(settings.samgeo_url)
    if settings.samgeo_cmd:
        return _plan_from_command(settings)
    found = shutil.which(SAMGEO_API, path=settings.path)
    if found:
        return LaunchPlan((found,), f"{SAMGEO_API} ({found})", serves_sam_only=True)
    command = (sys.executable, "-m", "geolibre_ml", "model-server")
    problem = None
    if not engine_installed():
        problem = (
            "The model server cannot start here: the segmentation engine is not installed. "
            "Install it with: pip install 'geolibre-ml[engine]', or set GEOLIBRE_ML_SAMGEO_URL "
            "to a running model server."
        )
    return LaunchPlan(command, "geolibre-ml model-server", problem=problem)


def _plan_from_command(settings: Settings) -> LaunchPlan:
    text = settings.samgeo_cmd or ""
    source = f"GEOLIBRE_ML_SAMGEO_CMD ({text})"
    try:
        parts = shlex.split(text)
    except ValueError as exc:
        return LaunchPlan((), source, problem=f"GEOLIBRE_ML_SAMGEO_CMD cannot be parsed: {exc}.")
    if not parts:
        return LaunchPlan((), source, problem="GEOLIBRE_ML_SAMGEO_CMD is empty.")
    program = shutil.which(parts[0], path=settings.path)
    if program is None:
        return LaunchPlan(
            tuple(parts),
            source,
            problem=(
                f"GEOLIBRE_ML_SAMGEO_CMD names {parts[0]!r}, which was not found or is not "
                "executable. Give the full path of the model server's command, or unset it."
            ),
        )
    name = parts[0].rsplit("/", 1)[-1]
    return LaunchPlan((program, *parts[1:]), source, serves_sam_only=name == SAMGEO_API)
