"""The sidecar's settings, read from the environment when the app is created.

Public variables (see ``CONTRACT.md``): ``GEOLIBRE_ML_SAMGEO_URL``, ``GEOLIBRE_ML_SAMGEO_CMD``,
``GEOLIBRE_ML_DEFAULT_MODEL``, ``GEOLIBRE_SIDECAR_TOKEN``. Two more tune the proxy's patience:
``GEOLIBRE_ML_PROXY_TIMEOUT`` (seconds the backend may stay silent, default 1800) and
``GEOLIBRE_ML_START_TIMEOUT`` (seconds a launched model server has to answer ``/health``,
default 60).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

MIB = 1024 * 1024


class ConfigError(ValueError):
    """An environment variable holds a value the sidecar cannot use."""


def _text(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    text = _text(environ, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number of seconds.") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={text!r} must be a positive number of seconds.")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the sidecar is configured with.

    Attributes:
        samgeo_url: base URL of a running model server (``GEOLIBRE_ML_SAMGEO_URL``).
        samgeo_cmd: command launched on first use (``GEOLIBRE_ML_SAMGEO_CMD``).
        default_model: model the UI defaults to (``GEOLIBRE_ML_DEFAULT_MODEL``).
        token: shared secret every request but ``/health`` and preflights must present
            (``GEOLIBRE_SIDECAR_TOKEN``).
        proxy_timeout: seconds the backend may take to accept more of an upload, to start
            its answer, or between two parts of it; past that the sidecar answers 504.
        start_timeout: seconds a launched model server has to answer ``/health``.
        probe_timeout: seconds ``/ml/status`` waits for the backend's ``/health`` and
            ``/models``, so that the status stays cheap when the backend is slow.
        max_upload_bytes: largest request body forwarded (bytes); larger ones get 413.
        max_segmentations: segmentations in flight at once; more get 429.
        path: the ``PATH`` searched for ``samgeo-api`` and for the launch command.
        child_env: environment of a launched model server (the sidecar's own).
    """

    samgeo_url: str | None = None
    samgeo_cmd: str | None = None
    default_model: str | None = None
    token: str | None = None
    proxy_timeout: float = 1800.0
    start_timeout: float = 60.0
    probe_timeout: float = 3.0
    max_upload_bytes: int = 100 * MIB
    max_segmentations: int = 4
    path: str | None = None
    child_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``environ`` (the process environment by default).

        Raises:
            ConfigError: a timeout variable that is not a positive number.
        """
        env = dict(os.environ if environ is None else environ)
        return cls(
            samgeo_url=_text(env, "GEOLIBRE_ML_SAMGEO_URL"),
            samgeo_cmd=_text(env, "GEOLIBRE_ML_SAMGEO_CMD"),
            default_model=_text(env, "GEOLIBRE_ML_DEFAULT_MODEL"),
            token=_text(env, "GEOLIBRE_SIDECAR_TOKEN"),
            proxy_timeout=_seconds(env, "GEOLIBRE_ML_PROXY_TIMEOUT", 1800.0),
            start_timeout=_seconds(env, "GEOLIBRE_ML_START_TIMEOUT", 60.0),
            path=env.get("PATH"),
            child_env=env,
        )
