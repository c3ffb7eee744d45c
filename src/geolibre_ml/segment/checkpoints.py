"""Cancellation inside long steps: checkpoints that code deep in a run can call.

A run's stages check ``cancelled()`` between windows and steps; a single step can take
seconds on a large window (superpixels, merging, polygonizing, ground areas), so the
code that does it calls :func:`checkpoint` between its own phases or batches. The
pipeline installs the run's check with :func:`watching` around each step; outside a
run, :func:`checkpoint` does nothing. The check is a context variable, so concurrent
runs in other threads each see their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from .errors import Cancelled

_check: ContextVar[Callable[[], bool] | None] = ContextVar("geolibre_ml_cancelled", default=None)


@contextlib.contextmanager
def watching(cancelled: Callable[[], bool] | None) -> Iterator[None]:
    """Make :func:`checkpoint` poll ``cancelled`` inside this block (None: never)."""
    token = _check.set(cancelled)
    try:
        yield
    finally:
        _check.reset(token)


def checkpoint() -> None:
    """Raise :class:`~.errors.Cancelled` if the run in progress has been cancelled."""
    cancelled = _check.get()
    if cancelled is not None and cancelled():
        raise Cancelled("The run was cancelled.")
