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
