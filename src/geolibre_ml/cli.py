"""The ``geolibre-ml`` command: ``serve``, ``model-server`` and ``segment``.

Each subcommand imports only what it needs, so ``geolibre-ml serve`` works in a
sidecar-only install and ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys

from geolibre_ml import __version__

ENGINE_MISSING = (
    "The segmentation engine is not installed in this environment. "
    "Install it with: pip install 'geolibre-ml[engine]'"
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="geolibre-ml",
        description="Turn geospatial imagery into vector features with promptable segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="the sidecar (/ml proxy) and the web app")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")

    model_server = sub.add_parser("model-server", help="the samgeo-api compatible model server")
    model_server.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    model_server.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    model_server.add_argument(
        "--preload", metavar="VERSION[:MODEL_ID]", help="load a model before serving, e.g. classic"
    )
    model_server.add_argument("--reload", action="store_true", help=argparse.SUPPRESS)

    segment = sub.add_parser("segment", help="segment rasters into a vector file, in-process")
    segment.add_argument("inputs", nargs="+", metavar="INPUT", help="raster files or folders")
    segment.add_argument("-o", "--output", required=True, help="output file, or folder for several")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from geolibre_ml.sidecar.server import run as run_sidecar

        run_sidecar(host=args.host, port=args.port)
        return 0
    try:
        if args.command == "model-server":
            from geolibre_ml.modelserver.server import main as run_model_server

            return run_model_server(host=args.host, port=args.port, preload=args.preload)
    except ModuleNotFoundError as exc:
        print(f"geolibre-ml: {ENGINE_MISSING} ({exc.name} is missing)", file=sys.stderr)
        return 2
    print("geolibre-ml segment: not implemented yet", file=sys.stderr)
    return 1
