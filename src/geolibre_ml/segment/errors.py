"""Errors the library raises for bad input or requests it cannot satisfy.

Each error carries a message written for the person who sent the request: what is
wrong and how to fix it. Servers map the classes to HTTP status codes; the library
itself knows nothing of HTTP.
"""

from __future__ import annotations


class SegmentError(Exception):
    """Base class: a request the library cannot satisfy, with a user-facing message."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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
