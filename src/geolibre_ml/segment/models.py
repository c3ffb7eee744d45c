"""Loaded models: each (version, model id) loaded once, lazily, safely across threads."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from . import backends
from .backends import Backend
from .errors import ModelUnavailable

log = logging.getLogger(__name__)


def device_from_env() -> str | None:
    """``GEOLIBRE_ML_DEVICE`` (``cuda``, ``mps`` or ``cpu``), or None for the best available."""
    value = os.environ.get("GEOLIBRE_ML_DEVICE", "").strip().lower()
    return value or None


class ModelManager:
    """Loads backends on first use and hands them out.

    A model that is not thread-safe is used under its own lock, so concurrent
    requests share one copy of the weights and take turns on it.
    """

    def __init__(self, device: str | None = None) -> None:
        self.device = device if device is not None else device_from_env()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self._models: dict[tuple[str, str], Backend] = {}
        self._run_locks: dict[tuple[str, str], threading.Lock] = {}

    def default_version(self) -> str:
        """``sam3`` when it can be loaded now, else ``classic``."""
        return "sam3" if backends.availability("sam3").ready else "classic"

    def resolve(self, version: str | None, model_id: str | None) -> tuple[str, str]:
        """The (version, model id) a request means, defaults filled in and checked."""
        version = (version or "").strip() or self.default_version()
        backends.entry(version)
        return version, backends.resolve_model_id(version, (model_id or "").strip() or None)

    def get(self, version: str, model_id: str) -> Backend:
        """The loaded backend for (version, model id), loading it on first use.

        Raises:
            ModelUnavailable: with instructions, when it cannot be loaded here.
        """
        key = (version, model_id)
        model = self._models.get(key)
        if model is not None:
            return model
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            model = self._models.get(key)
            if model is not None:
                return model
            cls = backends.backend_class(version)
            assert cls is not None
            state = cls.availability(model_id)
            if not state.ready:
                raise ModelUnavailable(state.message)
            log.info("Loading model %s:%s", version, model_id)
            model = cls(model_id, device=self.device)
            with self._lock:
                self._models[key] = model
                self._run_locks[key] = threading.Lock()
            return model

    @contextlib.contextmanager
    def using(self, version: str, model_id: str) -> Iterator[Backend]:
        """Borrow a loaded backend, holding its lock when it is not thread-safe."""
        model = self.get(version, model_id)
        if model.thread_safe:
            yield model
            return
        with self._run_locks[(version, model_id)]:
            yield model

    def loaded(self) -> list[list[str]]:
        """``[[version, model_id], ...]`` for the models in memory."""
        with self._lock:
            return [list(key) for key in self._models]

    def catalog(self) -> dict[str, Any]:
        """The ``/models`` answer: known ids, loaded models, and readiness per version."""
        models = {v: list(backends.entry(v).model_ids) for v in backends.versions()}
        ready = {v: backends.availability(v).ready for v in backends.versions()}
        return {"models": models, "loaded": self.loaded(), "ready": ready}

    def clear(self) -> None:
        """Release every loaded model."""
        with self._lock:
            models = list(self._models.values())
            self._models.clear()
            self._run_locks.clear()
            self._loading.clear()
        for model in models:
            model.close()
