"""The registry of segmentation backends, one module per model family.

A backend is named by its ``model_version`` and found by import path, so a family
whose dependencies are missing costs nothing until it is asked for. Adding a
model is adding one module and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from .. import weights
from ..errors import InvalidRequest, ModelUnavailable, quoted
from .base import Availability, Backend


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend lives, or why it is not available in this build.

    ``model_ids`` are the ids a request may name, the default first; a ``catalogue``
    computes them instead where they depend on the configuration (SAM 3's checkpoint).
    """

    version: str
    model_ids: tuple[str, ...] = ()
    import_path: str | None = None
    unavailable: str | None = None
    catalogue: Callable[[], tuple[str, ...]] | None = None

    def ids(self) -> tuple[str, ...]:
        """The model ids offered now, the default first."""
        return self.catalogue() if self.catalogue is not None else self.model_ids


REGISTRY: dict[str, BackendEntry] = {
    "sam3": BackendEntry(
        "sam3",
        import_path="geolibre_ml.segment.backends.sam3:Sam3Backend",
        catalogue=weights.catalogue,
    ),
    "classic": BackendEntry(
        "classic", ("default",), import_path="geolibre_ml.segment.backends.classic:ClassicBackend"
    ),
}


def versions() -> list[str]:
    """Known model versions, in the order they are offered."""
    return list(REGISTRY)


def entry(version: str) -> BackendEntry:
    """The registry entry for ``version``.

    Raises:
        InvalidRequest: for an unknown version, listing the known ones.
    """
    try:
        return REGISTRY[version]
    except KeyError:
        raise InvalidRequest(
            f"Unknown model_version {quoted(version)}. Known versions: {', '.join(REGISTRY)}.",
            fields="model_version",
        ) from None


def resolve_model_id(version: str, model_id: str | None) -> str:
    """The model id to use: ``model_id`` when given and known, else the default.

    Raises:
        InvalidRequest: for a model id the version does not offer.
    """
    known = entry(version).ids()
    if not model_id:
        return known[0]
    if model_id not in known and not _accepts_any_id(version):
        raise InvalidRequest(
            f"Unknown model_id {quoted(model_id)} for {version}. Known ids: {', '.join(known)}.",
            fields="model_id",
        )
    return model_id


def _accepts_any_id(version: str) -> bool:
    backend = backend_class(version, raise_unavailable=False)
    return backend is not None and backend.accepts_any_model_id


def backend_class(version: str, *, raise_unavailable: bool = True) -> type[Backend] | None:
    """Import and return the backend class for ``version``.

    Raises:
        ModelUnavailable: when the backend is not part of this build or its
            module cannot be imported (a missing optional dependency).
    """
    item = entry(version)
    if item.import_path is None:
        if raise_unavailable:
            raise ModelUnavailable(
                item.unavailable or f"{version} is not available.", fields="model_version"
            )
        return None
    module_name, _, class_name = item.import_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if raise_unavailable:
            raise ModelUnavailable(
                f"The {version} backend cannot be imported: {exc}. Install its dependencies "
                f"(pip install 'geolibre-ml[{version}]')."
            ) from exc
        return None
    return getattr(module, class_name)


def availability(version: str, model_id: str | None = None) -> Availability:
    """Whether ``version`` (and ``model_id``) can be loaded now, offline; cheap."""
    item = entry(version)
    if item.import_path is None:
        return Availability(False, item.unavailable or f"{version} is not available.")
    try:
        cls = backend_class(version)
    except ModelUnavailable as exc:
        return Availability(False, exc.detail)
    assert cls is not None
    return cls.availability(model_id or item.ids()[0])


__all__ = [
    "REGISTRY",
    "Availability",
    "Backend",
    "BackendEntry",
    "availability",
    "backend_class",
    "entry",
    "resolve_model_id",
    "versions",
]
