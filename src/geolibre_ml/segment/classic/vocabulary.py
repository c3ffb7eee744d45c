"""The words a classic text prompt may use, and the land-cover class each one names.

The classic model has no language understanding: it knows a short, fixed list of
classes, each detected by spectral or colour rules (see :mod:`.indices`). Every
class has a canonical name and a few aliases; matching ignores case, surrounding
spaces and a trailing plural "s" or "es". Anything else is refused with a message
that lists the vocabulary and points to SAM 3 for open-vocabulary prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedPrompt, quoted


@dataclass(frozen=True)
class LandCover:
    """One class of the classic vocabulary.

    Attributes:
        name: canonical name, used in messages and documentation.
        words: every word or phrase that names the class (lower case, singular).
        description: what the class covers, in one line.
    """

    name: str
    words: tuple[str, ...]
    description: str


CLASSES: tuple[LandCover, ...] = (
    LandCover(
        "water",
        ("water", "water body", "waterbody", "open water", "surface water"),
        "open water: lakes, rivers, reservoirs, the sea (all of them; not one kind)",
    ),
    LandCover(
        "vegetation",
        ("vegetation", "green vegetation", "tree", "forest", "woodland", "grass"),
        "green vegetation: forest, trees, grass, crops in leaf (one class; the classic "
        "model cannot tell trees from grass)",
    ),
)

_BY_WORD: dict[str, LandCover] = {word: cls for cls in CLASSES for word in cls.words}


def _normalise(prompt: str) -> str:
    return " ".join(prompt.strip().lower().replace("_", " ").replace("-", " ").split())


def vocabulary() -> list[str]:
    """Every accepted word, sorted, as shown to users."""
    return sorted(_BY_WORD)


def resolve_class(prompt: str) -> LandCover:
    """The class a text prompt names.

    Raises:
        UnsupportedPrompt: for a prompt outside the vocabulary; the message lists
            every accepted word and says that SAM 3 answers open-vocabulary prompts.
    """
    word = _normalise(prompt)
    candidates = [word]
    if word.endswith("es"):
        candidates.append(word[:-2])
    if word.endswith("s"):
        candidates.append(word[:-1])
    for candidate in candidates:
        if candidate in _BY_WORD:
            return _BY_WORD[candidate]
    words = ", ".join(vocabulary())
    shown = prompt.strip() or prompt
    raise UnsupportedPrompt(
        f"The classic model does not know {quoted(shown)}: it finds only a fixed list of "
        f"land-cover classes, named by these words (plurals accepted): {words}. SAM 3 handles open "
        "vocabulary (any object, e.g. buildings or cars): send model_version=sam3 to a server "
        "where it is installed."
    )
