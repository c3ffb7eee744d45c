"""Running the sidecar: ``geolibre-ml serve``."""

from __future__ import annotations

import logging
import sys

import uvicorn

from .app import create_app
from .config import ConfigError, Settings
from .security import Redactor, RedactingFormatter, is_loopback_host

log = logging.getLogger("geolibre_ml.sidecar")

LOG_FORMAT = "%(levelname)-8s %(name)s: %(message)s"
#: Seconds requests in flight get to finish when the sidecar is asked to stop; then they
#: are cut and the model server is stopped.
GRACEFUL_SECONDS = 5


def configure_logging(redactor: Redactor, level: int = logging.INFO) -> None:
    """One stderr log for the sidecar, uvicorn and the model server's output, secrets hidden."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT, redactor))
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
    server = uvicorn.Server(config)

    def exit_now() -> None:
        server.should_exit = True

    app.state.exit_hook = exit_now
    try:
        server.run()
    finally:
        launcher = app.state.gateway.launcher
        if launcher is not None:
            launcher.stop_sync()
