"""Loaded models: each (version, model id) loaded once, lazily, and lent to runs."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import backends
from .backends import Backend
from .cache import PreparedCache
from .errors import ModelUnavailable

log = logging.getLogger(__name__)


def device_from_env() -> str | None:
    """``GEOLIBRE_ML_DEVICE`` (``cuda``, ``mps`` or ``cpu``), or None for the best available."""
    value = os.environ.get("GEOLIBRE_ML_DEVICE", "").strip().lower()
    return value or None


@dataclass(frozen=True)
class ModelSettings:
    """Which model a run uses: plain data, so per-window work can name it anywhere."""

    version: str
    model_id: str


class _Loaded:
    """A loaded model and its bookkeeping: the lock of a model that is not
    thread-safe, and the runs that hold it now."""

    def __init__(self, model: Backend) -> None:
        self.model = model
        self.lock = threading.Lock() if not model.thread_safe else None
        self.leases = 0
        self.retired = False


class Lease:
    """A loaded model borrowed for one run.

    It answers like the backend (``prepare``, ``run``, ``check_prompt``...), taking
    the model's lock around the backend's own calls when it is not thread-safe, and
    only there: reading, vectorizing and reprojecting run concurrently.
    """

    def __init__(self, loaded: _Loaded) -> None:
        self._loaded = loaded
        self.backend = loaded.model

    def __getattr__(self, name: str) -> Any:
        # Everything but the two calls that touch the weights: plain attributes.
        return getattr(self.backend, name)

    def _locked(self) -> contextlib.AbstractContextManager[Any]:
        lock = self._loaded.lock
        return lock if lock is not None else contextlib.nullcontext()

    def prepare(self, chip: Any) -> Any:
        """The backend's :meth:`~.backends.Backend.prepare`, under its lock if needed."""
        with self._locked():
            return self.backend.prepare(chip)

    def prepare_batch(self, chips: Any) -> list[Any]:
        """The backend's :meth:`~.backends.Backend.prepare_batch`, under its lock if needed."""
        with self._locked():
            return self.backend.prepare_batch(chips)

    def run(self, prepared: Any, prompt: Any) -> Any:
        """The backend's :meth:`~.backends.Backend.run`, under its lock if needed."""
        with self._locked():
            return self.backend.run(prepared, prompt)


class ModelManager:
    """Loads backends on first use and lends them to runs.

    Each (version, model id) is loaded once, lazily, under a lock; runs borrow it
    with :meth:`lease`, which counts them, so :meth:`clear` can forget every model
    at once and close each one as soon as its last run ends. The manager also holds
    the cache of prepared state that runs share (see :mod:`.cache`).
    """

    def __init__(self, device: str | None = None, *, cache: PreparedCache | None = None) -> None:
        self.device = device if device is not None else device_from_env()
        self.prepared = cache if cache is not None else PreparedCache()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self._models: dict[tuple[str, str], _Loaded] = {}

    def default_version(self) -> str:
        """``sam3`` when it can be loaded now, else ``classic``."""
        return "sam3" if backends.availability("sam3").ready else "classic"

    def resolve(self, version: str | None, model_id: str | None) -> tuple[str, str]:
        """The (version, model id) a request means, defaults filled in and checked."""
        version = (version or "").strip() or self.default_version()
        backends.entry(version)
        return version, backends.resolve_model_id(version, (model_id or "").strip() or None)

    def _load(self, version: str, model_id: str) -> None:
        """Load (version, model id) unless it is loaded."""
        key = (version, model_id)
        if key in self._models:
            return
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            if key in self._models:
                return
            cls = backends.backend_class(version)
            assert cls is not None
            state = cls.availability(model_id)
            if not state.ready:
                raise ModelUnavailable(state.message, fields="model_version")
            log.info("Loading model %s:%s", version, model_id)
            model = cls(model_id, device=self.device)
            with self._lock:
                self._models[key] = _Loaded(model)

    def get(self, version: str, model_id: str) -> Backend:
        """The loaded backend for (version, model id), loading it on first use.

        Raises:
            ModelUnavailable: with instructions, when it cannot be loaded here.
        """
        self._load(version, model_id)
        with self._lock:
            return self._models[(version, model_id)].model

    @contextlib.contextmanager
    def lease(self, version: str, model_id: str) -> Iterator[Lease]:
        """Borrow (version, model id) for one run, loading it on first use.

        Raises:
            ModelUnavailable: with instructions, when it cannot be loaded here.
        """
        key = (version, model_id)
        while True:
            self._load(version, model_id)
            with self._lock:
                loaded = self._models.get(key)
                if loaded is not None:  # else cleared between loading and leasing
                    loaded.leases += 1
                    break
        try:
            yield Lease(loaded)
        finally:
            with self._lock:
                loaded.leases -= 1
                closing = loaded.retired and loaded.leases == 0
            if closing:
                loaded.model.close()

    def loaded(self) -> list[list[str]]:
        """``[[version, model_id], ...]`` for the models in memory."""
        with self._lock:
            return [list(key) for key in self._models]

    def catalog(self) -> dict[str, Any]:
        """The ``/models`` answer: known ids, loaded models, and readiness per version."""
        models = {v: list(backends.entry(v).ids()) for v in backends.versions()}
        ready = {v: backends.availability(v).ready for v in backends.versions()}
        return {"models": models, "loaded": self.loaded(), "ready": ready}

    def clear(self) -> None:
        """Forget every loaded model and the prepared cache.

        Models no run holds are closed now; a model a run still holds is closed
        when that run ends (the run itself finishes normally).
        """
        with self._lock:
            models = list(self._models.values())
            self._models.clear()
            self._loading.clear()
            for loaded in models:
                loaded.retired = True
            idle = [loaded for loaded in models if loaded.leases == 0]
        self.prepared.clear()
        for loaded in idle:
            loaded.model.close()
