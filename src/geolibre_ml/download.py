"""``geolibre-ml download-model``: fetch a SAM 3 checkpoint into the Hugging Face cache.

The servers never download (they resolve model ids from the local cache only, see
:mod:`geolibre_ml.segment.weights`); this command is the one place that does. It fetches
only the files a transformers checkpoint needs, shows huggingface_hub's progress bars on a
terminal, and turns the hub's answers (gated model, wrong id, no network, offline mode)
into plain words on stderr: no traceback, and never the token itself.

Exit status: 0 downloaded (or nothing to do), 1 the download failed (network, access,
disk), 2 bad usage (a model id that cannot be used, a missing local folder).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from geolibre_ml.segment.weights import Located

PROG = "geolibre-ml download-model"

#: The files of a transformers checkpoint: configuration, safetensors weights (single or
#: sharded, with the index), processor and tokenizer files (json, BPE merges, sentencepiece
#: or tiktoken vocabularies). Anything else (``sam3.pt``, the original-format duplicate of
#: the weights, example images, the model card) is not needed to load the model.
ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken")

TOKENS_URL = "https://huggingface.co/settings/tokens"
HUB_URL = "https://huggingface.co"
SAM3_NEEDS_EXTRA = "pip install 'geolibre-ml[sam3]'"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class DownloadFailed(Exception):
    """A download that did not happen: what to tell the user, and the exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``download-model`` subcommand's arguments (parsing imports nothing heavy)."""
    parser = sub.add_parser(
        "download-model",
        help="fetch a SAM 3 checkpoint into the Hugging Face cache",
        description=(
            "Fetch a SAM 3 checkpoint (transformers format: config, safetensors weights, "
            "processor and tokenizer files) into the Hugging Face cache (HF_HOME or "
            "HF_HUB_CACHE), where the model server finds it offline. The servers themselves "
            "never download. facebook/sam3 is gated: request access on its page and set "
            "HF_TOKEN (or run `hf auth login`) first."
        ),
        epilog=(
            "exit status: 0 downloaded or nothing to do, 1 the download failed (network, "
            "access, disk), 2 bad usage"
        ),
    )
    parser.add_argument(
        "version",
        nargs="?",
        default="sam3",
        choices=("sam3", "classic"),
        metavar="VERSION",
        help="the model version: sam3 (the default); classic needs no download",
    )
    parser.add_argument(
        "--model-id",
        metavar="ID",
        help="Hugging Face id to fetch (default: GEOLIBRE_ML_SAM3_MODEL, else facebook/sam3)",
    )
    parser.add_argument(
        "--revision",
        metavar="REV",
        help="branch, tag or commit to fetch (default: the repository's main branch)",
    )
    return parser


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``download-model`` for parsed ``args``; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    if args.version == "classic":
        if args.model_id or args.revision:
            print(
                f"{PROG}: --model-id and --revision name a SAM 3 checkpoint; the classic "
                "model is built in and has neither.",
                file=err,
            )
            return EXIT_USAGE
        print("The classic model is built in: it needs no download and works offline.", file=out)
        return EXIT_OK
    try:
        return _run_sam3(args, out)
    except DownloadFailed as exc:
        print(f"{PROG}: {exc.message}", file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            f"\n{PROG}: interrupted. Run the same command again to resume: files already "
            "downloaded are kept.",
            file=err,
        )
        return EXIT_INTERRUPTED


def _run_sam3(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from geolibre_ml.segment import weights
    except ModuleNotFoundError as exc:
        raise DownloadFailed(
            f"the segmentation engine is not installed ({exc.name} is missing). Install it "
            f"with: {SAM3_NEEDS_EXTRA}"
        ) from None
    model_id = (args.model_id or "").strip() or weights.configured_model()
    if model_id in weights.NOT_LOADABLE:
        raise DownloadFailed(
            f"{model_id} cannot be used yet: the installed transformers has no model class "
            f"for it, so the servers could not load it. Use {weights.DEFAULT_SAM3_MODEL} "
            "(the default).",
            EXIT_USAGE,
        )
    if weights.is_local_folder(model_id):
        return _local_folder(model_id, weights, out)
    _require_hub()

    from huggingface_hub import constants

    revision = args.revision or None
    if constants.HF_HUB_OFFLINE:
        where = f"HF_HUB_OFFLINE=1 is set: looking for {model_id} in {_hub_cache()} only"
    else:
        where = f"Downloading {model_id}" + (f" (revision {revision})" if revision else "")
        where += f" from {_endpoint()} into {_hub_cache()}"
    print(where, file=out, flush=True)
    folder = fetch(model_id, revision=revision)
    located = weights.locate(str(folder))
    problem = located.problem and _problem_in(located, str(folder), model_id)
    if problem is None and not _model_type(folder).startswith("sam3"):
        problem = f"its config.json says model_type {_model_type(folder)!r}"
    if problem:
        raise DownloadFailed(
            f"{model_id} was downloaded to {folder}, but it is not a SAM 3 checkpoint in "
            f"transformers format: {problem}. Check the model id (the SAM 3 checkpoint is "
            f"{weights.DEFAULT_SAM3_MODEL})."
        )
    print(f"{model_id} is in the Hugging Face cache: {folder}", file=out)
    _say_what_next(model_id, revision, folder, weights, out)
    return EXIT_OK


def _local_folder(model_id: str, weights: Any, out: TextIO) -> int:
    """A local folder is used where it is: there is nothing to download into it."""
    path = Path(model_id).expanduser()
    if not path.is_dir():
        raise DownloadFailed(
            f"{model_id} is a local folder, and it does not exist. A local folder is used as "
            "it is, nothing is downloaded into it: copy a SAM 3 checkpoint in transformers "
            f"format there, or give a Hugging Face id (e.g. --model-id "
            f"{weights.DEFAULT_SAM3_MODEL}) to download one.",
            EXIT_USAGE,
        )
    located = weights.locate(str(path))
    if located.folder is None:
        raise DownloadFailed(
            f"{model_id} is a local folder, so there is nothing to download, but it cannot be "
            f"loaded: {_problem_in(located, str(path), model_id)}. Copy a complete SAM 3 "
            "checkpoint in transformers format (config.json, model.safetensors, processor "
            "files) there.",
            EXIT_USAGE,
        )
    print(
        f"{model_id} is a local folder with a complete checkpoint: nothing to download.",
        file=out,
    )
    _say_ready(model_id, weights, out)
    return EXIT_OK


def _model_type(folder: Path) -> str:
    """``model_type`` of the checkpoint's ``config.json`` ("" when unreadable)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(config.get("model_type", "")) if isinstance(config, dict) else ""


def _problem_in(located: Located, given: str, model_id: str) -> str:
    # locate() names the folder it was given; say it with the id the user typed.
    return (located.problem or "it is incomplete").replace(given, model_id)


def _say_what_next(model_id: str, revision: str | None, folder: Path, weights: Any, out: TextIO):
    if revision and revision != "main" and weights.locate(model_id).folder != folder:
        # The servers resolve a hub id at the cache's "main" ref; another revision is
        # used by naming its snapshot folder.
        print(
            f"The servers read {model_id} at the revision of the cache's main branch, not "
            f"this one. To use this revision, set {weights.SAM3_MODEL_ENV}={folder} where "
            "they run.",
            file=out,
        )
        return
    _say_ready(model_id, weights, out)


def _say_ready(model_id: str, weights: Any, out: TextIO) -> None:
    if model_id in weights.catalogue():
        print(
            f"The model server's GET /models now reports sam3 ready for {model_id}; it loads "
            "from the cache, offline.",
            file=out,
        )
    else:
        print(
            f"The servers use {weights.configured_model()}; to use {model_id}, set "
            f"{weights.SAM3_MODEL_ENV}={model_id} where they run (GET /models then reports "
            "sam3 ready).",
            file=out,
        )


def fetch(model_id: str, *, revision: str | None = None) -> Path:
    """Download ``model_id``'s checkpoint files into the Hugging Face cache.

    Args:
        model_id: a hub repository id (``owner/name``).
        revision: branch, tag or commit; None for the main branch.

    Returns:
        The snapshot folder in the cache.

    Raises:
        DownloadFailed: with a plain-words message for every hub, network or disk error.
    """
    _require_hub()
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import tqdm as hub_tqdm

    opened: list[Any] = []

    class TerminalBars(hub_tqdm):
        """huggingface_hub's bars, drawn on a terminal only: its file counter would
        otherwise print bar after bar into a log or a pipe."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("disable", None)  # tqdm: None disables on a non-terminal
            if _zero_size_terminal():
                # tqdm would draw empty bars, or hide them all as beyond the last row.
                size = shutil.get_terminal_size()  # COLUMNS and LINES, else 80 x 24
                kwargs.setdefault("ncols", size.columns)
                kwargs.setdefault("nrows", size.lines)
            super().__init__(*args, **kwargs)
            opened.append(self)

    try:
        folder = snapshot_download(
            model_id,
            revision=revision,
            allow_patterns=list(ALLOW_PATTERNS),
            tqdm_class=TerminalBars,
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        raise DownloadFailed(explain(exc, model_id, revision)) from exc
    finally:
        # snapshot_download leaves its byte counters open (they close when collected,
        # drawing themselves again below whatever was printed after them).
        for bar in opened:
            bar.close()
    return Path(folder)


def _zero_size_terminal() -> bool:
    """A terminal that reports no size (some containers' pseudo-terminals)."""
    try:
        return sys.stderr.isatty() and os.get_terminal_size(sys.stderr.fileno()).columns == 0
    except (OSError, ValueError, AttributeError):
        return False


def _require_hub() -> None:
    """huggingface_hub comes with the ``sam3`` extra, not with the engine."""
    try:
        import huggingface_hub  # noqa: F401
    except ModuleNotFoundError:
        raise DownloadFailed(
            f"huggingface_hub is not installed. Install SAM 3 support with: {SAM3_NEEDS_EXTRA}"
        ) from None


def explain(exc: BaseException, model_id: str, revision: str | None = None) -> str:
    """A plain-words message for an exception raised by a hub download.

    huggingface_hub wraps the cause (a gated answer, a refused connection) in other errors
    (``LocalEntryNotFoundError``), so the whole chain of causes is searched, most specific
    kind first.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    chain = _chain(exc)

    def find(kind: type | tuple[type, ...]) -> Any:
        return next((e for e in chain if isinstance(e, kind)), None)

    page = f"{HUB_URL}/{model_id}"
    if gated := find(GatedRepoError):
        return _gated(model_id, page, _status(gated))
    if find(RevisionNotFoundError):
        return (
            f"{model_id} has no revision {revision!r}. See the branches and tags at "
            f"{page}/tree/main, or leave out --revision for the main branch."
        )
    if find(RepositoryNotFoundError):
        return (
            f"{model_id} was not found on the Hugging Face hub ({page}): the id is wrong, or "
            "the repository is private and needs a token of an account that can see it "
            f"({_token_words()}). The SAM 3 checkpoint is facebook/sam3."
        )
    if find(OfflineModeIsEnabled) or (constants.HF_HUB_OFFLINE and not find(HfHubHTTPError)):
        return (
            f"there is no network access: HF_HUB_OFFLINE=1 is set, so nothing is downloaded, "
            f"and {model_id} is not (completely) in the Hugging Face cache ({_hub_cache()}). "
            f"{_without_network(model_id)}"
        )
    if http := find(HfHubHTTPError):
        return _http_error(http, model_id, page)
    if network := _network_error(chain):
        return (
            f"there is no network: the Hugging Face hub at {_endpoint()} cannot be reached "
            f"({network}). Check the connection (and HTTPS_PROXY if a proxy is needed), then "
            f"run the same command again: files already downloaded are kept. "
            f"{_without_network(model_id)}"
        )
    if disk := find(OSError):
        if disk.errno == errno.ENOSPC:
            return (
                f"the disk holding the Hugging Face cache ({_hub_cache()}) is full. Free some "
                "space (SAM 3 needs about 3.5 GB) or set HF_HOME to a folder on a larger disk, "
                "then run again."
            )
        if disk.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return (
                f"the Hugging Face cache ({_hub_cache()}) cannot be written ({disk.strerror}). "
                "Set HF_HOME to a folder you can write to, then run again."
            )
    return f"downloading {model_id} failed: {type(exc).__name__}: {_first_line(exc)}"


def _gated(model_id: str, page: str, status: int | None) -> str:
    token = _token_source()
    steps = (
        f"  1. Log in at {HUB_URL} and request access at {page} (accept the licence; the page "
        "says when access is granted).\n"
        f"  2. Create a token with read access at {TOKENS_URL}.\n"
        "  3. Make it available here: export HF_TOKEN=hf_...   (or run `hf auth login` once).\n"
        f"Then run `{PROG}` again."
    )
    if token is None:
        return (
            f"{model_id} is a gated model: its authors grant access one account at a time, "
            f"and no Hugging Face token was found (HF_TOKEN is not set and nobody ran "
            f"`hf auth login`).\n{steps}"
        )
    if status == 403:
        return (
            f"{model_id} is a gated model, and the Hugging Face token found ({token}) belongs "
            f"to an account without access to it yet. Request access at {page} and wait until "
            "it is granted. If it is granted already, the token may belong to another account, "
            "or be a fine-grained token without 'Read access to contents of all public gated "
            f"repos you can access': create a read token at {TOKENS_URL}.\n{steps}"
        )
    return (
        f"{model_id} is a gated model, and the hub did not accept the Hugging Face token found "
        f"({token}) for it.\n{steps}"
    )


def _http_error(http: Any, model_id: str, page: str) -> str:
    status = _status(http)
    server_says = http.response.headers.get("X-Error-Message") if http.response else None
    if status == 401:
        return (
            f"the Hugging Face hub refused the token ({_token_words()}): it is invalid or "
            f"expired. Create a new one at {TOKENS_URL}, then export HF_TOKEN=hf_... (or run "
            "`hf auth login`) and run again."
        )
    if status == 403:
        return (
            f"the Hugging Face hub refused access to {model_id} ({_token_words()}). Check that "
            f"your account has access at {page} and that the token may read gated "
            f"repositories (a read token from {TOKENS_URL})."
        )
    if status == 429:
        return "the Hugging Face hub asks to slow down (too many requests); try again later."
    if status is not None and status >= 500:
        return (
            f"the Hugging Face hub is not answering properly right now (HTTP {status}); try "
            "again later: files already downloaded are kept."
        )
    detail = f": {server_says}" if server_says else ""
    return f"the Hugging Face hub answered HTTP {status} for {model_id}{detail}."


def _without_network(model_id: str) -> str:
    return (
        "Without network, copy a SAM 3 checkpoint folder in transformers format (config.json, "
        "model.safetensors, processor files) from a machine that has one, and set "
        "GEOLIBRE_ML_SAM3_MODEL=/path/to/that/folder; or copy a whole Hugging Face cache "
        f"holding {model_id} and point HF_HOME at it. Meanwhile model_version=classic works "
        "offline."
    )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _network_error(chain: list[BaseException]) -> str | None:
    """A short description of the first connection-level failure in ``chain``."""
    try:
        import httpx2

        transport: tuple[type, ...] = (httpx2.TransportError,)
    except ModuleNotFoundError:  # older huggingface_hub releases use httpx or requests
        transport = ()
    for error in chain:
        if isinstance(error, transport):
            kind = "timed out" if "Timeout" in type(error).__name__ else "connection failed"
            if "Proxy" in type(error).__name__:
                kind = "the proxy refused the connection"
            return f"{kind}: {_first_line(error)}" if str(error) else kind
        if isinstance(error, (ConnectionError, TimeoutError)):
            return _first_line(error) or type(error).__name__
    return None


def _status(http: Any) -> int | None:
    response = getattr(http, "response", None)
    return getattr(response, "status_code", None)


def _token_source() -> str | None:
    """Where the token huggingface_hub sends comes from, in words; None when there is none.
    The token itself is never returned."""
    if (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or "").strip():
        return "from HF_TOKEN"
    try:
        from huggingface_hub import get_token

        found = get_token()
    except Exception:
        # A token that cannot be read is no token; its error is not this message's subject.
        found = None
    return "saved by `hf auth login`" if found else None


def _token_words() -> str:
    source = _token_source()
    return f"a token was sent, {source}" if source else "no token was found: HF_TOKEN is not set"


def _hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _endpoint() -> str:
    """The hub's address, without any credentials written into HF_ENDPOINT."""
    from huggingface_hub import constants

    parts = urlsplit(constants.ENDPOINT)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
