"""Running our servers as real processes on loopback ports, for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Variables of ours that a test's server must not inherit from the developer's shell.
GEOLIBRE_VARIABLES = (
    "GEOLIBRE_ML_SAMGEO_URL",
    "GEOLIBRE_ML_SAMGEO_CMD",
    "GEOLIBRE_ML_DEFAULT_MODEL",
    "GEOLIBRE_SIDECAR_TOKEN",
    "GEOLIBRE_ML_PROXY_TIMEOUT",
    "GEOLIBRE_ML_START_TIMEOUT",
    "GEOLIBRE_ML_DATA_ROOTS",
)


def clean_env(**overrides: str) -> dict[str, str]:
    """Our variables cleared (set empty, which the servers read as unset), then ``overrides``."""
    return {name: "" for name in GEOLIBRE_VARIABLES} | overrides


@dataclass
class ServerProcess:
    """A server started by a test: its process, URL and log file."""

    process: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")


def wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    """Poll ``url/health`` until it answers 200, or fail with the server's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} not healthy after {timeout}s:\n{log_path.read_text()}")


def no_sam3_weights(folder: Path) -> dict[str, str]:
    """Environment in which no SAM 3 checkpoint is found and nothing is downloaded: an
    empty Hugging Face home under ``folder``, offline, the default checkpoint id (so a
    developer's own cached weights never change what a test sees). Tests that want SAM 3
    set ``HF_HOME`` or ``GEOLIBRE_ML_SAM3_MODEL`` themselves."""
    home = folder / "hf-home-empty"
    home.mkdir(parents=True, exist_ok=True)
    return {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "GEOLIBRE_ML_SAM3_MODEL": ""}


@contextlib.contextmanager
def run_server(
    args: list[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    port: int | None = None,
    health_timeout: float = 60,
) -> Iterator[ServerProcess]:
    """Run ``python -m geolibre_ml ARGS --host 127.0.0.1 --port PORT`` until the block ends.

    The process gets its own session so that it and its children can be stopped
    together; on exit it receives SIGTERM, then SIGKILL after 10 s.
    """
    port = port or free_port()
    full_env = {**os.environ, **no_sam3_weights(log_path.parent), "PYTHONUNBUFFERED": "1"}
    full_env.update(env or {})
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "geolibre_ml",
                *args,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log_path, health_timeout)
        yield ServerProcess(process, url, log_path)
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the process (and its session), escalating to SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


@contextlib.contextmanager
def run_script(argv: list[str], log_path: Path, port: int | None = None) -> Iterator[ServerProcess]:
    """Run a server script (``argv`` + ``--host 127.0.0.1 --port P``) until the block ends."""
    port = port or free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log_path, 30)
        yield ServerProcess(process, url, log_path)
    finally:
        stop(process)
