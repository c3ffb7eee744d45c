"""The words a classic text prompt may use, and the class each one names."""

from __future__ import annotations

from ..errors import UnsupportedPrompt

#: Prompt words (lower case) to class names.
ALIASES: dict[str, str] = {
    "water": "water",
    "vegetation": "vegetation",
    "trees": "vegetation",
    "tree": "vegetation",
    "forest": "vegetation",
    "grass": "vegetation",
}


def resolve_class(prompt: str) -> str:
    """The class a prompt names.

    Raises:
        UnsupportedPrompt: listing the vocabulary, for any other word.
    """
    word = " ".join(prompt.strip().lower().split())
    if word in ALIASES:
        return ALIASES[word]
    raise UnsupportedPrompt(
        f"The classic model does not know {prompt!r}. Its vocabulary is: "
        f"{', '.join(sorted(ALIASES))}. For open-vocabulary prompts use model_version=sam3."
    )
