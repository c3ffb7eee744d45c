"""Uploads: a size cap enforced while the body streams in, and a private directory per
request that is removed on every path, also after the server was killed.

Starlette parses the multipart body before an endpoint runs, spooling the file part
to an anonymous temporary file (no name in the file system, gone when closed). The
endpoint then copies it into a private directory so that GDAL can open it by name.
Those directories live under ONE folder of the server's own,
``<TMPDIR>/geolibre-ml-uploads/<pid>/request-*`` (see :class:`UploadArea`): each request's
directory is removed when the request ends, whether it succeeded, failed or the client
went away; the process folder when the server stops; and the folder of a server that
was killed (SIGKILL, or the sidecar's ``/shutdown`` during a run) by the next server's
start-up (:func:`remove_stale`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geolibre_ml.envvars import MIB, mib_from_env

try:  # POSIX; elsewhere a folder's owner is judged by its PID alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("geolibre_ml.modelserver")

CHUNK = 1024 * 1024

#: The folder, under the system temporary folder, that holds every server's uploads.
UPLOADS_FOLDER = "geolibre-ml-uploads"
#: The file a server holds locked (``flock``) in its process folder while it runs.
LOCK_NAME = ".lock"
#: Prefix of a process folder being set up (renamed to the PID once locked).
CLAIM_PREFIX = ".claim-"
#: Seconds after which an unlocked folder still being set up counts as abandoned.
CLAIM_GRACE_S = 60.0

#: Default cap on a request body, in MiB; ``GEOLIBRE_ML_MAX_UPLOAD_MB`` overrides it.
DEFAULT_MAX_UPLOAD_MB = 4096


def max_upload_bytes_from_env() -> int:
    """The upload cap in bytes: ``GEOLIBRE_ML_MAX_UPLOAD_MB`` (MiB) or the default.

    A value that is not a positive number falls back to the default rather than
    removing the cap.
    """
    value = mib_from_env("GEOLIBRE_ML_MAX_UPLOAD_MB")
    return DEFAULT_MAX_UPLOAD_MB * MIB if value is None else value


def too_large_detail(limit: int) -> str:
    """The 413 detail for a body over ``limit`` bytes."""
    return (
        f"The upload is larger than this server accepts ({limit / 1024 / 1024:,.0f} MiB). "
        "Crop or compress the image (e.g. gdal_translate -co COMPRESS=DEFLATE), or raise "
        "GEOLIBRE_ML_MAX_UPLOAD_MB on the server."
    )


class UploadTooLarge(HTTPException):
    """Raised from the request stream once the body passes the cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_detail(limit))


class UploadLimit:
    """ASGI middleware capping request bodies at ``max_bytes``.

    A ``Content-Length`` over the cap is refused before any of the body is read.
    Otherwise (chunked uploads, or a length that lies) the bytes are counted as they
    arrive and the stream fails with a 413 as soon as the count passes the cap, so
    nothing larger is ever written to disk.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        length = _content_length(scope)
        if length is not None and length > limit:
            # Closing the connection tells the client to stop sending the body.
            response = JSONResponse(
                {"detail": too_large_detail(limit)},
                status_code=413,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise UploadTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except UploadTooLarge as exc:
            # Reached only where the stream was read outside FastAPI's request handling.
            if started:
                raise
            response = JSONResponse(
                {"detail": exc.detail}, status_code=413, headers={"Connection": "close"}
            )
            await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


#: Longest display name, in characters: file systems cap a name at 255 bytes, so a
#: longer one is not a real file's name, and every message quoting it would grow.
MAX_DISPLAY_NAME = 255


def display_name(filename: str | None) -> str:
    """The upload's base name as the client sent it (for ``source`` and messages).

    A name over :data:`MAX_DISPLAY_NAME` characters is shortened in its middle with an
    ellipsis, keeping its start and its extension.
    """
    name = Path((filename or "").replace("\\", "/")).name or "upload"
    if len(name) <= MAX_DISPLAY_NAME:
        return name
    tail = 40
    return f"{name[: MAX_DISPLAY_NAME - tail - 1]}…{name[-tail:]}"


def safe_name(filename: str | None) -> str:
    """The upload's base name, reduced to something safe to create on disk."""
    base = Path((filename or "").replace("\\", "/")).name
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in base).lstrip(".")
    return keep[:120] or "upload"


class UploadArea:
    """One server process's folder for uploads: ``<root>/<pid>/``, one subfolder per request.

    The process folder is claimed on first use: set up under a temporary name, its
    :data:`LOCK_NAME` file locked with ``flock`` for the life of the process (the kernel
    releases the lock when the process dies, however it dies), then renamed to the PID.
    Another server can thus tell a live owner (lock held) from a dead one (lock free,
    or PID gone) without trusting PIDs, which the system reuses.

    Args:
        root: the folder holding every server's process folders; default
            ``<TMPDIR>/geolibre-ml-uploads``. Created private (0700) if missing; refused
            if it is a symbolic link or belongs to another user.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.gettempdir()) / UPLOADS_FOLDER
        self._folder: Path | None = None
        self._lock_fd: int | None = None
        self._pid = os.getpid()

    def open(self) -> Path:
        """Remove the folders of servers that are gone, then claim this process's folder.

        Returns:
            This process's folder.
        """
        _private_root(self.root)
        for folder in remove_stale(self.root):
            log.info("Removed the uploads of a stopped model server: %s", folder)
        return self.folder()

    def folder(self) -> Path:
        """This process's folder, claimed on first call."""
        if self._folder is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._folder, self._lock_fd = _claim(self.root)
        return self._folder

    def request_folder(self, prefix: str = "request-") -> Path:
        """A fresh private directory (mode 0700, unique name) for one request, or, with
        ``prefix="job-"``, for one job (which outlives its request)."""
        try:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=self.folder()))
        except FileNotFoundError:
            # Someone removed the process folder (a user clearing /tmp): claim it anew.
            self.close()
            return Path(tempfile.mkdtemp(prefix=prefix, dir=self.folder()))

    def close(self) -> None:
        """Remove this process's folder and release its lock (at shutdown)."""
        if self._folder is not None and self._pid == os.getpid():
            shutil.rmtree(self._folder, ignore_errors=True)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
        self._folder = self._lock_fd = None


def _private_root(root: Path) -> None:
    """Create ``root`` (0700), or check that an existing one is a folder of this user."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.lstat()
    owner_ok = not hasattr(os, "geteuid") or info.st_uid == os.geteuid()
    if root.is_symlink() or not root.is_dir() or not owner_ok:
        raise RuntimeError(
            f"{root} is not a private folder of this user, so uploads cannot be kept there: "
            "remove it, or point TMPDIR elsewhere."
        )


def _claim(root: Path) -> tuple[Path, int | None]:
    _private_root(root)
    staging = Path(tempfile.mkdtemp(prefix=CLAIM_PREFIX, dir=root))
    fd = os.open(staging / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    final = root / str(os.getpid())
    if final.exists():
        # Left by an earlier process with this PID: that process is certainly gone.
        shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final, fd


def remove_stale(root: Path) -> list[Path]:
    """Remove the process folders under ``root`` whose server is gone.

    A folder is stale when its lock is free (its owner died; or the PID now belongs to
    another program), or, without a lock file, when no process has its PID. A folder
    whose lock is held is never touched, nor anything under ``root`` not named like
    ours.

    Returns:
        The folders removed.
    """
    removed = []
    if not root.is_dir():
        return removed
    for entry in sorted(root.iterdir()):
        if entry.name.isdigit() and entry.is_dir():
            stale = int(entry.name) != os.getpid() and _owner_gone(entry)
        elif entry.name.startswith(CLAIM_PREFIX) and entry.is_dir():
            stale = _abandoned_claim(entry)
        else:
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _owner_gone(folder: Path) -> bool:
    held = _lock_held(folder / LOCK_NAME)
    if held is None:
        return not pid_alive(int(folder.name))
    return not held


def _abandoned_claim(folder: Path) -> bool:
    try:
        age = time.time() - folder.stat().st_mtime
    except OSError:
        return False
    return age > CLAIM_GRACE_S and _lock_held(folder / LOCK_NAME) is not True


def _lock_held(lock: Path) -> bool | None:
    """Whether some process holds ``lock``; None when there is no such file (or no flock)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        # Closing also releases the lock this check may have taken.
        os.close(fd)
    return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (POSIX signal 0: nothing is sent)."""
    if os.name != "posix":
        return True  # cannot tell safely (os.kill would terminate it): keep the folder
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM  # exists, but belongs to another user
    return True


_process_area: UploadArea | None = None


def process_area() -> UploadArea:
    """This process's :class:`UploadArea` under ``TMPDIR`` (one per process: it is
    named after the PID)."""
    global _process_area
    if _process_area is None:
        _process_area = UploadArea()
    return _process_area


@dataclass(frozen=True)
class SavedUpload:
    """An upload on disk: its path in the request's private folder, and the digest of
    its bytes (the key under which prepared windows of the image are cached)."""

    path: Path
    digest: str


@contextlib.asynccontextmanager
async def saved_upload(
    upload: UploadFile, area: UploadArea | None = None
) -> AsyncIterator[SavedUpload]:
    """Copy ``upload`` into a fresh private directory; remove it when the block exits.

    The directory is private to the request (``mkdtemp``: mode 0700, unique name) inside
    ``area``'s process folder (default :func:`process_area`), so concurrent requests with
    the same file name never collide, and a killed server's uploads can be found later.
    The bytes are hashed while they are written, at no extra read.
    """
    workdir = (area or process_area()).request_folder()
    try:
        path = workdir / safe_name(upload.filename)
        digest = await run_in_threadpool(_copy, upload, path)
        yield SavedUpload(path, digest)
    finally:
        # Synchronous on purpose: it must run even when the request task is being
        # cancelled, and removing one file is quick.
        shutil.rmtree(workdir, ignore_errors=True)


def _copy(upload: UploadFile, path: Path) -> str:
    # The spooled file is read synchronously in a worker thread: one hop for the whole
    # copy instead of one per chunk.
    source = upload.file
    source.seek(0)
    digest = hashlib.blake2b(digest_size=16)
    with path.open("wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()
