"""``geolibre-ml download-model`` run as a real process against a stand-in hub on loopback.

No test reaches the internet: ``HF_ENDPOINT`` points at :mod:`support.hub` (which answers
like the Hugging Face hub, error headers included), at a closed loopback port, or
``HF_HUB_OFFLINE=1`` is set; ``HF_HOME`` is a temporary folder, so no real cache or saved
token is read.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from support.hub import FakeHub, HubRepo, serve
from support.sam3_checkpoint import build_checkpoint
from support.servers import free_port

GRANTED, NOT_GRANTED, UNKNOWN = "hf_granted0123456789", "hf_nogrant0123456789", "hf_bogus0123456789"
#: In facebook/sam3 beside the transformers files: the original-format weights, which
#: download-model must not fetch, and files a checkpoint does not need.
EXTRA_FILES = {
    "sam3.pt": b"original-format weights",
    "README.md": b"# SAM 3",
    ".gitattributes": b"",
}

# Variables of the calling environment that would change what these tests see.
_HUB_VARS = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_CACHE",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "HF_ENDPOINT",
    "GEOLIBRE_ML_SAM3_MODEL",
    "TQDM_POSITION",
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("sam3"))


@pytest.fixture
def hub(checkpoint: Path) -> FakeHub:
    repo = HubRepo.from_folder(checkpoint, EXTRA_FILES, gated=True, granted={GRANTED})
    # A public repository that has the right files but holds another model.
    other = HubRepo(
        files={
            "config.json": b'{"model_type": "bert"}',
            "model.safetensors": b"not loaded",
            "processor_config.json": b"{}",
        }
    )
    with serve({"facebook/sam3": repo, "someone/bert": other}, tokens={NOT_GRANTED}) as running:
        yield running


def hub_env(tmp_path: Path, endpoint: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _HUB_VARS}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return {**env, **extra}


def download(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geolibre_ml", "download-model", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def locate_in_cache(env: dict[str, str], model_id: str = "facebook/sam3") -> str:
    """What the servers' own lookup finds, offline, in the cache of ``env``."""
    code = (
        "from geolibre_ml.segment.weights import locate; "
        f"found = locate({model_id!r}); print(found.folder or found.problem)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "HF_HUB_OFFLINE": "1"},
        check=True,
    )
    return result.stdout.strip()


def assert_plain(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    """No traceback, no progress bar off a terminal, and no token in anything printed."""
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    assert "%|" not in text
    for secret in secrets:
        assert secret not in text


def test_offline_without_the_checkpoint_says_so(tmp_path: Path) -> None:
    result = download("sam3", env=hub_env(tmp_path, HF_HUB_OFFLINE="1"))

    assert result.returncode == 1, result.stderr
    assert_plain(result)
    assert "HF_HUB_OFFLINE=1 is set" in result.stderr
    assert "no network" in result.stderr
    assert "GEOLIBRE_ML_SAM3_MODEL=/path/to/that/folder" in result.stderr
    assert str(tmp_path / "hf" / "hub") in result.stderr  # says which cache it looked in


def test_unreachable_hub_says_there_is_no_network(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    result = download(env=hub_env(tmp_path, closed))

    assert result.returncode == 1, result.stderr
    assert_plain(result)
    assert f"hub at {closed} cannot be reached" in result.stderr
    assert "no network" in result.stderr
    assert "GEOLIBRE_ML_SAM3_MODEL" in result.stderr
    assert not (tmp_path / "hf" / "hub" / "models--facebook--sam3" / "snapshots").exists()


def test_gated_without_a_token_says_where_to_ask_and_how_to_set_it(
    hub: FakeHub, tmp_path: Path
) -> None:
    result = download("sam3", env=hub_env(tmp_path, hub.url))

    assert result.returncode == 1, result.stderr
    assert_plain(result)
    err = result.stderr
    assert "facebook/sam3 is a gated model" in err
    assert "no Hugging Face token was found" in err
    assert "request access at https://huggingface.co/facebook/sam3" in err
    assert "https://huggingface.co/settings/tokens" in err
    assert "export HF_TOKEN=hf_..." in err
    assert "hf auth login" in err
    # The hub was asked, anonymously, and no file content came back.
    assert all(r.token is None for r in hub.requests)
    assert hub.fetched() == set()


def test_gated_with_a_token_of_an_account_without_access(hub: FakeHub, tmp_path: Path) -> None:
    result = download(env=hub_env(tmp_path, hub.url, HF_TOKEN=NOT_GRANTED))

    assert result.returncode == 1, result.stderr
    assert_plain(result, NOT_GRANTED)
    err = result.stderr
    assert "the Hugging Face token found (from HF_TOKEN)" in err
    assert "without access" in err
    assert "https://huggingface.co/facebook/sam3" in err
    assert {r.token for r in hub.requests} == {NOT_GRANTED}  # the token was sent, not printed


def test_a_token_the_hub_does_not_know_is_called_invalid(hub: FakeHub, tmp_path: Path) -> None:
    result = download(env=hub_env(tmp_path, hub.url, HF_TOKEN=UNKNOWN))

    assert result.returncode == 1, result.stderr
    assert_plain(result, UNKNOWN)
    assert "refused the token" in result.stderr
    assert "invalid or expired" in result.stderr
    assert "a token was sent, from HF_TOKEN" in result.stderr


def test_unknown_repository_says_the_id_is_wrong_or_private(hub: FakeHub, tmp_path: Path) -> None:
    result = download("--model-id", "facebook/sam4", env=hub_env(tmp_path, hub.url))

    assert result.returncode == 1, result.stderr
    assert_plain(result)
    assert "facebook/sam4 was not found on the Hugging Face hub" in result.stderr
    assert "the id is wrong, or the repository is private" in result.stderr


def test_unknown_revision(hub: FakeHub, tmp_path: Path) -> None:
    env = hub_env(tmp_path, hub.url, HF_TOKEN=GRANTED)

    result = download("--revision", "v9", env=env)

    assert result.returncode == 1, result.stderr
    assert_plain(result, GRANTED)
    assert "facebook/sam3 has no revision 'v9'" in result.stderr


def test_download_fetches_only_the_transformers_files_into_the_cache(
    hub: FakeHub, checkpoint: Path, tmp_path: Path
) -> None:
    env = hub_env(tmp_path, hub.url, HF_TOKEN=GRANTED)
    assert locate_in_cache(env) == "facebook/sam3 is not in the Hugging Face cache"

    result = download("sam3", env=env)

    assert result.returncode == 0, result.stderr
    assert_plain(result, GRANTED)
    expected = {p.name for p in checkpoint.iterdir()}
    assert hub.fetched() == expected  # config, weights, processor, tokenizer; no sam3.pt
    snapshot = tmp_path / "hf" / "hub" / "models--facebook--sam3" / "snapshots"
    folder = snapshot / HubRepo(files={}).commit
    assert {p.name for p in folder.iterdir()} == expected
    assert (folder / "model.safetensors").read_bytes() == (
        checkpoint / "model.safetensors"
    ).read_bytes()
    assert f"facebook/sam3 is in the Hugging Face cache: {folder}" in result.stdout
    assert "GET /models now reports sam3 ready for facebook/sam3" in result.stdout
    # The servers' offline lookup now finds it.
    assert Path(locate_in_cache(env)) == folder

    # Offline afterwards: nothing to fetch, and still a success.
    hub.requests.clear()
    again = download(env={**env, "HF_HUB_OFFLINE": "1"})
    assert again.returncode == 0, again.stderr
    assert "looking for facebook/sam3 in" in again.stdout
    assert f"is in the Hugging Face cache: {folder}" in again.stdout
    assert hub.requests == []


def test_another_revision_is_named_by_its_folder(hub: FakeHub, tmp_path: Path) -> None:
    env = hub_env(tmp_path, hub.url, HF_TOKEN=GRANTED)
    commit = HubRepo(files={}).commit

    result = download("--revision", commit, env=env)

    assert result.returncode == 0, result.stderr
    folder = tmp_path / "hf" / "hub" / "models--facebook--sam3" / "snapshots" / commit
    assert f"(revision {commit})" in result.stdout
    # A commit is not the cache's main branch, which the servers read: say how to use it.
    assert f"set GEOLIBRE_ML_SAM3_MODEL={folder} where they run" in result.stdout
    assert "GET /models now reports" not in result.stdout
    assert locate_in_cache(env) == "facebook/sam3 is not in the Hugging Face cache"


def test_a_repository_that_is_not_sam3_is_refused(hub: FakeHub, tmp_path: Path) -> None:
    result = download("--model-id", "someone/bert", env=hub_env(tmp_path, hub.url))

    assert result.returncode == 1, result.stderr
    assert_plain(result)
    assert "someone/bert was downloaded to" in result.stderr
    assert "not a SAM 3 checkpoint" in result.stderr
    assert "model_type 'bert'" in result.stderr


@pytest.mark.parametrize("rows_cols", [(24, 100), (0, 0)], ids=["sized", "no-size"])
def test_progress_bars_show_on_a_terminal(
    hub: FakeHub, tmp_path: Path, rows_cols: tuple[int, int]
) -> None:
    # "no-size": a pseudo-terminal that reports 0 x 0, as some containers' do.
    env = hub_env(tmp_path, hub.url, HF_TOKEN=GRANTED)
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", *rows_cols, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "geolibre_ml", "download-model"],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([primary], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal's other side closed: the process ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert process.wait(timeout=60) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "Fetching 7 files" in screen
    assert "7/7" in screen
    assert "100%|" in screen
    assert "Traceback" not in screen
    assert GRANTED not in screen
    # The bars are closed before the closing lines, which come last.
    assert screen.rstrip().endswith("it loads from the cache, offline.")


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["classic"], 0, "needs no download"),
        (["classic", "--model-id", "x/y"], 2, "classic model is built in"),
        (["sam4"], 2, "invalid choice: 'sam4'"),
        (["--model-id", "facebook/sam3.1"], 2, "transformers has no model class"),
        (["--model-id", "/no/such/folder"], 2, "does not exist"),
    ],
)
def test_usage(tmp_path: Path, args: list[str], code: int, words: str) -> None:
    # Offline and pointed at a closed port: none of these may try the network.
    closed = f"http://127.0.0.1:{free_port()}"
    result = download(*args, env=hub_env(tmp_path, closed, HF_HUB_OFFLINE="1"))

    assert result.returncode == code, result.stderr
    assert_plain(result)
    assert words in result.stdout + result.stderr
    assert "Downloading" not in result.stdout


def test_a_local_folder_needs_no_download(checkpoint: Path, tmp_path: Path) -> None:
    env = hub_env(tmp_path, HF_HUB_OFFLINE="1", GEOLIBRE_ML_SAM3_MODEL=str(checkpoint))

    result = download(env=env)

    assert result.returncode == 0, result.stderr
    assert "is a local folder with a complete checkpoint: nothing to download" in result.stdout
    assert "reports sam3 ready" in result.stdout


def test_an_incomplete_local_folder_is_named(checkpoint: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_bytes((checkpoint / "config.json").read_bytes())

    result = download("--model-id", str(partial), env=hub_env(tmp_path, HF_HUB_OFFLINE="1"))

    assert result.returncode == 2, result.stderr
    assert_plain(result)
    assert "missing" in result.stderr
    assert "model.safetensors" in result.stderr


def test_a_saved_login_token_is_used_and_named_but_not_printed(
    hub: FakeHub, tmp_path: Path
) -> None:
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text(NOT_GRANTED)  # where `hf auth login` saves it

    result = download(env=hub_env(tmp_path, hub.url))

    assert result.returncode == 1, result.stderr
    assert_plain(result, NOT_GRANTED)
    assert "the Hugging Face token found (saved by `hf auth login`)" in result.stderr
    assert {r.token for r in hub.requests} == {NOT_GRANTED}
