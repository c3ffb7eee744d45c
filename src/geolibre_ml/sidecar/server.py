"""Running the sidecar: ``geolibre-ml serve``."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn

from .app import create_app
from .config import ConfigError, Settings
from .security import RedactingFormatter, Redactor, is_loopback_host

log = logging.getLogger("geolibre_ml.sidecar")

LOG_FORMAT = "%(levelname)-8s %(name)s: %(message)s"
#: Seconds requests in flight get to finish when the sidecar is asked to stop; then they
#: are cut and the model server is stopped.
GRACEFUL_SECONDS = 5


class SidecarServer(uvicorn.Server):
    """uvicorn's server, which also stops the model server as soon as a signal asks it to end.

    Requests still waiting on the model server then end at once with an answer (503)
    instead of being cut when the graceful period runs out.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()

    async def serve(self, sockets: list | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if first and self._loop is not None:
            self._loop.call_soon_threadsafe(self._run_on_exit)

    def _run_on_exit(self) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._on_exit())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _short_uvicorn_name(record: logging.LogRecord) -> bool:
    # uvicorn logs its life cycle as "uvicorn.error", which reads as a failure.
    if record.name == "uvicorn.error":
        record.name = "uvicorn"
    return True


def configure_logging(redactor: Redactor, level: int = logging.INFO) -> None:
    """One stderr log for the sidecar, uvicorn and the model server's output, secrets hidden."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT, redactor))
    handler.addFilter(_short_uvicorn_name)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request at INFO: noise here, and the URLs are the backend's.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def run(host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the sidecar until interrupted or ``POST /shutdown``.

    Args:
        host: interface to bind (loopback by default; requests must name a loopback host
            whatever the interface).
        port: TCP port.

    Whatever way the server ends (signal, ``/shutdown``, a second Ctrl-C that skips the
    graceful path, a failure to bind), the model server it launched is stopped.
    """
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"geolibre-ml serve: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(Redactor.for_settings(settings.samgeo_url, settings.token))
    if not is_loopback_host(host):
        log.warning(
            "Listening on %s, but the sidecar answers only requests addressed to a loopback "
            "host (127.0.0.1, localhost, [::1]).",
            host,
        )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    launcher = app.state.gateway.launcher

    async def stop_model_server() -> None:
        if launcher is not None:
            await launcher.stop()

    server = SidecarServer(config, stop_model_server)

    def exit_now() -> None:
        server.should_exit = True

    app.state.exit_hook = exit_now
    try:
        server.run()
    finally:
        if launcher is not None:
            launcher.stop_sync()
