"""Errors the library raises for bad input or requests it cannot satisfy.

Each error carries a message written for the person who sent the request: what is
wrong and how to fix it. Servers map the classes to HTTP status codes; the library
itself knows nothing of HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence


class SegmentError(Exception):
    """Base class: a request the library cannot satisfy, with a user-facing message.

    Attributes:
        detail: the message, naming fields by their HTTP form names
            (``point_coords``), as the model server answers it.
        fields: the fields the message is about, as data: the first is the one at
            fault; every one the message names is listed, so that another interface
            can say the same in its own words (:meth:`render`: the CLI's flags).
    """

    def __init__(self, detail: str, *, fields: str | Sequence[str] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields: tuple[str, ...] = (fields,) if isinstance(fields, str) else tuple(fields)

    @property
    def field(self) -> str | None:
        """The field at fault, or None when the error concerns no single field."""
        return self.fields[0] if self.fields else None

    def render(self, names: Mapping[str, str]) -> str:
        """The message with each field it names written as ``names`` says
        (e.g. ``{"point_coords": "--points"}``); other words are left alone."""
        text = self.detail
        for name in self.fields:
            if name in names:
                text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", names[name], text)
        return text


class InvalidRequest(SegmentError):
    """A parameter is malformed or out of range (bad JSON, unknown format, bad CRS...)."""


class UnreadableImage(SegmentError):
    """The input is not an image the library can read (empty, corrupt, unsupported)."""


class ImageTooLarge(SegmentError):
    """The input is larger than this installation is configured to process."""


class UnsupportedPrompt(SegmentError):
    """The model cannot answer this prompt (e.g. a word outside classic's vocabulary)."""


class ModelUnavailable(SegmentError):
    """The requested model cannot be loaded here; the message says how to make it available."""


class ClusterUnavailable(ModelUnavailable):
    """The Dask cluster cannot be reached, or has no worker that can run the model
    (e.g. no worker offers the ``GPU`` resource SAM 3 tiles ask for)."""


class NoObjectsFound(SegmentError):
    """The model ran and found nothing: a normal outcome, not a failure."""


class Cancelled(SegmentError):
    """The caller cancelled the run."""


#: How many characters of a value a message quotes before cutting it.
QUOTE_LIMIT = 60


def clipped(text: str, limit: int = 200) -> str:
    """``text`` cut at ``limit`` characters with an ellipsis (e.g. a library's message
    that repeats what the client sent)."""
    return text if len(text) <= limit else f"{text[:limit]}…"


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for a message, bounded: what a client sent may be megabytes long.

    A string longer than ``limit`` characters shows its first ``limit`` and its length
    (``'abc…'… (900,000 characters)``); another value's repr is cut at ``limit``
    characters with an ellipsis.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    return clipped(repr(value), limit)


_NO_OBJECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "text": ("Try a different prompt or a lower confidence_threshold.", ("confidence_threshold",)),
    "automatic": ("Try a smaller min_size or no max_size.", ("min_size", "max_size")),
    "predict": ("Try a larger box, other points, or a smaller min_size.", ("min_size",)),
}


def no_objects(mode: str, prompt: str | None = None) -> NoObjectsFound:
    """The one "no objects found" message of each mode (samgeo-api's first words).

    Args:
        mode: ``text``, ``automatic`` or ``predict``.
        prompt: the text prompt, quoted in text mode when given.
    """
    hint, fields = _NO_OBJECTS[mode]
    if mode == "text":
        what = f"the given prompt ({prompt!r})" if prompt else "the given prompt"
    elif mode == "automatic":
        what = "automatic segmentation"
    else:
        what = "the given prompts"
    return NoObjectsFound(f"No objects found for {what}. {hint}", fields=fields)


# An absolute path at the start of the text or after a space, quote, bracket or "=".
_ABSOLUTE_PATH = re.compile(r"(?<![^\s'\"(=])(?:[A-Za-z]:)?(?:[\\/][^\s\\/:,;'\"()]+)+[\\/]?")
_GDAL_CONFIG_HINT = re.compile(r"\s*\(this error can be turned as a warning[^)]*\)")


def gdal_message(
    exc: BaseException, *, paths: Sequence[str] = (), name: str | None = None, limit: int = 300
) -> str:
    """What GDAL (or PROJ) said in an exception chain, fit to show a client.

    The most specific message of the chain is kept (not rasterio's "See previous
    exception"); the server's own file ``paths`` become ``name`` and any other
    absolute path its last component, so no message reveals where the server keeps
    its files; white space is folded and the text cut to ``limit`` characters.
    """
    messages: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = " ".join(str(current).split())
        if text and "See previous exception" not in text:
            messages.append(text)
        current = current.__cause__ or current.__context__
    if not messages:
        return type(exc).__name__
    text = messages[-1]
    for path in sorted(paths, key=len, reverse=True):
        if path:
            # A bare file name (libtiff's way of naming the file) only as a whole word.
            text = re.sub(rf"(?<![\w.-]){re.escape(path)}(?![\w.-])", name or "the file", text)
    # "<server path>: message" from a file the caller did not name: the message alone.
    head, sep, tail = text.partition(": ")
    if sep and _ABSOLUTE_PATH.fullmatch(head):
        text = tail
    text = _ABSOLUTE_PATH.sub(lambda m: re.split(r"[\\/]", m.group(0).rstrip("\\/"))[-1], text)
    text = _GDAL_CONFIG_HINT.sub("", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SourceRefused(SegmentError):
    """A ``source`` the server will not open: a scheme other than http(s), a GDAL
    virtual file system, or a local path outside the allowed data folders (403)."""
