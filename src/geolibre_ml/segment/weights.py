"""Where SAM 3 checkpoints are: the catalogue of model ids and their files on disk.

A SAM 3 ``model_id`` is either a Hugging Face repository id, resolved **only** from the
local Hugging Face cache (the servers never download; ``geolibre-ml download-model``
does), or the local folder named by ``GEOLIBRE_ML_SAM3_MODEL``. Requests may only name
ids of the catalogue (:func:`catalogue`), so a client can never make the server read an
arbitrary path. Checking is cheap: it looks for files and loads nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The checkpoint used when ``GEOLIBRE_ML_SAM3_MODEL`` is unset.
DEFAULT_SAM3_MODEL = "facebook/sam3"
#: The environment variable naming the checkpoint (a hub id or a local folder).
SAM3_MODEL_ENV = "GEOLIBRE_ML_SAM3_MODEL"
#: Published SAM 3 checkpoints that transformers cannot load yet: listed in messages,
#: never offered (``facebook/sam3.1`` has no transformers model class in 5.x).
NOT_LOADABLE = ("facebook/sam3.1",)

#: Files a checkpoint folder must hold to be loadable (weights: one of the two).
_CONFIG = "config.json"
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_PROCESSOR = "processor_config.json"


def configured_model() -> str:
    """``GEOLIBRE_ML_SAM3_MODEL``, or :data:`DEFAULT_SAM3_MODEL` when unset."""
    return os.environ.get(SAM3_MODEL_ENV, "").strip() or DEFAULT_SAM3_MODEL


def catalogue() -> tuple[str, ...]:
    """Model ids a request may name: the configured checkpoint first (the default),
    then ``facebook/sam3`` when it is another one."""
    configured = configured_model()
    return tuple(dict.fromkeys((configured, DEFAULT_SAM3_MODEL)))


def is_local_folder(model_id: str) -> bool:
    """True when ``model_id`` names a folder on disk rather than a hub repository
    (hub ids are ``owner/name``: no leading ``/``, ``.`` or ``~``, one slash at most)."""
    return (
        model_id.startswith(("/", ".", "~", "\\"))
        or model_id.count("/") > 1
        or "\\" in model_id
        or Path(model_id).expanduser().is_dir()
    )


@dataclass(frozen=True)
class Located:
    """A checkpoint found on disk (``folder``), or why not (``problem``)."""

    folder: Path | None
    problem: str | None = None


def locate(model_id: str) -> Located:
    """The folder holding ``model_id``'s checkpoint, without network and without loading.

    A local folder must hold ``config.json``, the weights and the processor files; a
    hub id must be in the Hugging Face cache (``HF_HOME``/``HF_HUB_CACHE``) with them.
    """
    path = Path(model_id).expanduser()
    if path.is_dir():
        return _complete(path.resolve(), model_id)
    if is_local_folder(model_id):
        return Located(None, f"the folder {model_id} does not exist")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError
    except ImportError:
        return Located(None, "huggingface_hub is not installed (pip install 'geolibre-ml[sam3]')")
    try:
        folder = Path(snapshot_download(model_id, local_files_only=True, cache_dir=hub_cache_dir()))
    except IncompleteSnapshotError as exc:
        # The cache's listing of the repository names files that were not fetched (a
        # download of only the transformers files leaves out e.g. sam3.pt): whether the
        # snapshot is usable is for _complete to say, not huggingface_hub.
        folder = Path(exc.snapshot_path)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return Located(None, f"{model_id} is not in the Hugging Face cache")
    return _complete(folder, model_id)


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``; huggingface_hub itself reads it
    once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _complete(folder: Path, model_id: str) -> Located:
    missing = [name for name in (_CONFIG, _PROCESSOR) if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in _WEIGHTS):
        missing.append(_WEIGHTS[0])
    if missing:
        return Located(None, f"{model_id} is incomplete on disk (missing {', '.join(missing)})")
    return Located(folder)


def missing_weights_message(model_id: str, problem: str) -> str:
    """How to make ``model_id`` available, in plain words (the 503's ``detail``)."""
    if is_local_folder(model_id):
        how = (
            f"Point {SAM3_MODEL_ENV} at a folder with a SAM 3 checkpoint in transformers "
            "format (config.json, model.safetensors, processor files), e.g. one saved by "
            "`geolibre-ml download-model sam3`."
        )
    else:
        how = (
            f"Download it once with `geolibre-ml download-model sam3` (the model is gated: "
            f"request access at https://huggingface.co/{model_id} and set HF_TOKEN to a token "
            f"from https://huggingface.co/settings/tokens), or set {SAM3_MODEL_ENV} to a local "
            "folder holding a transformers-format SAM 3 checkpoint."
        )
    fallback = "Meanwhile model_version=classic works offline."
    return f"SAM 3 is not available: {problem}. {how} {fallback}"
