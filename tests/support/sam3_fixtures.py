"""pytest fixtures for the SAM 3 tests: the tiny checkpoint, as a folder and as
``facebook/sam3`` in an offline Hugging Face cache.

Registered by tests/conftest.py, so every test folder can use them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

#: The commit hash the planted cache entry claims (any 40 hex digits).
PLANTED_COMMIT = "0" * 39 + "1"


@pytest.fixture(scope="session")
def sam3_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SAM 3 checkpoint (detector, tracker, processor) in a folder."""
    pytest.importorskip("transformers")
    from support.sam3_checkpoint import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("sam3-tiny") / "checkpoint")


def plant_in_hf_cache(checkpoint: Path, hf_home: Path, repo_id: str = "facebook/sam3") -> Path:
    """Copy ``checkpoint`` into ``hf_home``'s hub cache as ``repo_id`` (the layout
    ``huggingface_hub`` writes: blobs are plain files here), and return the snapshot."""
    owner, name = repo_id.split("/")
    repo = hf_home / "hub" / f"models--{owner}--{name}"
    snapshot = repo / "snapshots" / PLANTED_COMMIT
    shutil.copytree(checkpoint, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(PLANTED_COMMIT)
    return snapshot


@pytest.fixture(scope="session")
def sam3_hf_home(sam3_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``HF_HOME`` whose hub cache holds the tiny checkpoint as ``facebook/sam3``."""
    home = tmp_path_factory.mktemp("hf-home")
    plant_in_hf_cache(sam3_checkpoint, home)
    return home


@pytest.fixture
def offline_hf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty, offline Hugging Face home for this test (nothing cached)."""
    home = tmp_path / "hf-empty"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GEOLIBRE_ML_SAM3_MODEL", raising=False)
    return home
