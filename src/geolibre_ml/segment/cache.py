"""Prepared state kept between prompts: a small cache bounded in bytes.

Preparing a window (reading and stretching its pixels; for SAM 3, encoding the
image) costs far more than answering one prompt on it, and people prompt the same
image again and again. The pipeline keeps what a backend prepared under a key made of
the image's content (a hash taken while the upload was written), the window, the
read plan and the model, so that the next prompt on the same image skips
preparation. Entries are evicted least recently used first once their total size
passes the bound; an entry larger than the whole bound is not kept.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from geolibre_ml.envvars import MIB, mib_from_env

#: Default bound, in MiB; ``GEOLIBRE_ML_CACHE_MB`` overrides it (0 turns the cache off).
DEFAULT_CACHE_MB = 512


def cache_bytes_from_env() -> int:
    """The cache bound in bytes: ``GEOLIBRE_ML_CACHE_MB`` (MiB; 0 turns it off), or the
    default."""
    value = mib_from_env("GEOLIBRE_ML_CACHE_MB", allow_zero=True)
    return DEFAULT_CACHE_MB * MIB if value is None else value


def nbytes_of(value: Any, _depth: int = 0) -> int:
    """Bytes held by arrays in ``value`` (numpy arrays, tensors; inside dataclasses,
    dicts, lists and tuples), the measure of a cache entry."""
    if _depth > 6 or value is None:
        return 0
    size = getattr(value, "nbytes", None)
    if isinstance(size, int):
        return size
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # torch.Tensor
        return int(value.element_size() * value.nelement())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        items: Any = (getattr(value, f.name) for f in dataclasses.fields(value))
    elif isinstance(value, dict):
        items = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return 0
    return sum(nbytes_of(item, _depth + 1) for item in items)


class PreparedCache:
    """A thread-safe LRU map from keys to prepared state, bounded in bytes.

    Concurrent requests for one missing key prepare it once: the others wait for
    the first and then share its result.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = cache_bytes_from_env() if max_bytes is None else max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def get_or_make(self, key: Hashable | None, make: Callable[[], tuple[Any, int]]) -> Any:
        """The entry for ``key``, made by ``make() -> (value, nbytes)`` when missing."""
        return self.fetch(key, make)[0]

    def fetch(
        self,
        key: Hashable | None,
        make: Callable[[], tuple[Any, int]],
        keep: Callable[[int], bool] | None = None,
    ) -> tuple[Any, bool]:
        """``(entry, reused)``: the entry for ``key``, made by ``make() -> (value, nbytes)``
        when missing; ``reused`` says whether it was already there.

        A ``key`` of None (content not known) always makes a fresh value, never kept;
        nor is one that ``keep(nbytes)`` refuses.
        """
        if key is None or self.max_bytes <= 0:
            return make()[0], False
        with self._lock:
            if key in self._entries:
                return self._hit(key), True
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:
            with self._lock:
                if key in self._entries:
                    return self._hit(key), True
                self.misses += 1
            try:
                value, size = make()
                if keep is None or keep(size):
                    self._put(key, value, size)
            finally:
                with self._lock:
                    self._pending.pop(key, None)
            return value, False

    def _hit(self, key: Hashable) -> Any:
        self.hits += 1
        self._entries.move_to_end(key)
        return self._entries[key][0]

    def _put(self, key: Hashable, value: Any, size: int) -> None:
        if size > self.max_bytes:
            return
        with self._lock:
            self._entries[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes and self._entries:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped

    def discard(self, match: Callable[[Hashable], bool]) -> None:
        """Drop every entry whose key ``match`` accepts (e.g. one model's, one image's)."""
        with self._lock:
            for key in [k for k in self._entries if match(k)]:
                self.bytes -= self._entries.pop(key)[1]

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self.bytes = 0


class RunCache:
    """One run's use of a :class:`PreparedCache`: it keeps the run's windows only when
    all of them fit in the cache together.

    A run over more windows than the cache holds would evict each window before a
    later prompt could reuse it, and push out every other image's entries on the way:
    from the first window's size on, such a run still reuses what is there but keeps
    nothing new, so the cache never holds more than its bound of one image's tiles.

    Args:
        cache: the shared cache.
        windows: how many windows the run prepares.
    """

    def __init__(self, cache: PreparedCache, windows: int) -> None:
        self.cache = cache
        self.windows = max(1, windows)
        self.keeping = True

    def __contains__(self, key: Hashable) -> bool:
        return key in self.cache

    def _keep(self, size: int) -> bool:
        if size * self.windows > self.cache.max_bytes:
            self.keeping = False
        return self.keeping

    def fetch(self, key: Hashable | None, make: Callable[[], tuple[Any, int]]) -> tuple[Any, bool]:
        """:meth:`PreparedCache.fetch`, keeping the entry only while the run fits."""
        return self.cache.fetch(key, make, keep=self._keep)
