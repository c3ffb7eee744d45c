"""The ``geolibre-ml`` command: ``serve``, ``model-server``, ``segment`` and ``download-model``.

Each subcommand imports only what it needs, so ``geolibre-ml serve`` works in a
sidecar-only install and ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import sys

from geolibre_ml import __version__
from geolibre_ml.download import add_parser as add_download_parser

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

    add_segment_parser(sub)
    add_download_parser(sub)
    return parser


SEGMENT_DESCRIPTION = """\
Segment one raster, several, or the images in a folder, and write the polygons
to vector files. Runs in this process (no server needed), or on a Dask cluster
with --scheduler; the model is loaded once for the whole batch (once per worker
on a cluster).

Inputs are GeoTIFFs (any band count and data type), PNGs or JPEGs. A folder
stands for every .tif, .tiff, .png, .jpg and .jpeg file directly in it (with
-r, in its subfolders too), in sorted order. Polygons come out in the raster's
CRS (or --output-crs); PNGs and JPEGs without georeferencing give pixel
coordinates (x right, y down) and a file without a CRS.
"""

SEGMENT_EPILOG = """\
where the output goes:
  One input file: OUTPUT is the file to write. Its extension picks the format:
    .geojson or .json (GeoJSON), .gpkg (GeoPackage), .fgb (FlatGeobuf),
    .parquet or .geoparquet (GeoParquet), .shp (Shapefile); --format overrides it.
  Several inputs, a folder input, or an OUTPUT that is an existing folder or
  ends with '/': OUTPUT is a folder (created if needed) and INPUT.tif becomes
  OUTPUT/INPUT.<ext>, in the format of --format (default geojson). Images found
  in subfolders with -r keep their relative path under OUTPUT. Inputs that differ
  only by their extension keep it: scene.tif.gpkg and scene.png.gpkg.
  Existing outputs are replaced. A GeoPackage layer is named after --prompt
  (text mode; several concepts joined with '+') or after the input file.

exit status:
  0    success; no objects found is a success too (an empty layer is written)
  1    any other failure, e.g. the model cannot be loaded or a file not written
  2    bad usage or an unreadable input (bad option or JSON, unknown CRS,
       missing or unreadable image); with several inputs the others still run,
       and 2 wins over 1 when both happen
  130  interrupted (Ctrl-C); the output being written is removed

examples:
  geolibre-ml segment scene.tif --prompt water -o water.gpkg
  geolibre-ml segment scene.tif -o regions.fgb --min-size 50
  geolibre-ml segment scene.tif --boxes '[[120, 80, 260, 190]]' -o field.geojson
  geolibre-ml segment scene.tif --boxes '[[13.40, 52.51, 13.41, 52.52]]' \\
      --point-crs EPSG:4326 --output-crs EPSG:4326 -o field.geojson
  geolibre-ml segment tiles/ -r --prompt trees --format parquet -o trees/
  geolibre-ml segment scene.tif --prompt water --prompts '["trees"]' -o cover.gpkg
  geolibre-ml segment scene.tif --boxes '[[120, 80, 260, 190]]' --box-mode object \\
      --model sam3 -o field.geojson
  geolibre-ml segment /shared/scenes/ --scheduler tcp://scheduler:8786 -o /shared/out/
"""


def add_segment_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``segment`` subcommand's arguments (parsing only; nothing heavy is imported)."""
    segment = sub.add_parser(
        "segment",
        help="segment rasters into vector files, in-process",
        description=SEGMENT_DESCRIPTION,
        epilog=SEGMENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    segment.add_argument("inputs", nargs="+", metavar="INPUT", help="raster files or folders")
    segment.add_argument(
        "-o", "--output", required=True, help="output file, or folder for several (see below)"
    )
    segment.add_argument(
        "-r", "--recursive", action="store_true", help="look for images in subfolders of folders"
    )

    prompt = segment.add_argument_group("what to segment")
    prompt.add_argument(
        "--mode",
        choices=("text", "automatic", "predict"),
        help="text: objects named by --prompt; automatic: every distinct region; predict: "
        "objects in --boxes / at --points (default: text with --prompt, predict with "
        "--boxes or --points, else automatic)",
    )
    prompt.add_argument("--prompt", metavar="TEXT", help="what to find, e.g. water or trees")
    prompt.add_argument(
        "--prompts",
        metavar="JSON",
        help='text mode: more concepts as a JSON list, e.g. \'["trees", "water"]\' (after '
        "--prompt, if any); each feature's prompt is the concept that found it",
    )
    prompt.add_argument(
        "--confidence",
        type=_fraction,
        default=0.5,
        metavar="0-1",
        help="text mode: keep objects scoring at least this; lower finds more (default 0.5)",
    )
    prompt.add_argument(
        "--boxes",
        metavar="JSON",
        help="boxes as JSON [[xmin, ymin, xmax, ymax], ...]: predict mode, the objects to "
        "segment; text mode, exemplars of what to find (sam3 only)",
    )
    prompt.add_argument("--points", metavar="JSON", help="points as JSON [[x, y], ...]")
    prompt.add_argument(
        "--labels",
        metavar="JSON",
        help="predict mode: one label per point, 1 foreground, 0 background; text mode: one "
        "per exemplar box, 1 positive, 0 negative (default: all 1)",
    )
    prompt.add_argument(
        "--point-crs",
        metavar="CRS",
        help="CRS of --boxes and --points, e.g. EPSG:4326 (default: pixel coordinates, x right "
        "and y down from the top-left corner)",
    )
    prompt.add_argument(
        "--box-mode",
        metavar="MODE",
        help="predict mode: what a box asks for, similar (every object like the one in it) or "
        "object (just the object in it); default: the model's (sam3 similar, classic object)",
    )

    model = segment.add_argument_group("model")
    model.add_argument(
        "--model",
        metavar="VERSION",
        help="sam3 or classic (default: sam3 when it can be loaded here, else classic)",
    )
    model.add_argument("--model-id", metavar="ID", help="model id within the version")

    output = segment.add_argument_group("output")
    output.add_argument(
        "--format",
        choices=FORMAT_NAMES,
        help="vector format, overriding OUTPUT's extension (folders: default geojson)",
    )
    output.add_argument(
        "--output-crs", metavar="CRS", help="reproject the polygons, e.g. EPSG:4326"
    )
    output.add_argument(
        "--min-size",
        type=_non_negative_int,
        default=0,
        metavar="PIXELS",
        help="drop objects smaller than this many pixels (default 0)",
    )
    output.add_argument(
        "--max-size",
        type=_non_negative_int,
        default=0,
        metavar="PIXELS",
        help="drop objects larger than this many pixels (default 0: no limit)",
    )
    output.add_argument(
        "--simplify",
        type=_non_negative_float,
        default=0.0,
        metavar="TOLERANCE",
        help="simplify polygons by this distance, in output CRS units (metres for UTM, "
        "degrees for EPSG:4326, pixels without a CRS); neighbours stay adjacent",
    )

    reading = segment.add_argument_group("input")
    reading.add_argument(
        "--bands",
        type=_bands,
        metavar="R,G,B",
        help="1-based bands to show the model as red, green, blue, e.g. 4,3,2 (default: "
        "from the file's metadata)",
    )
    reading.add_argument(
        "--tile-size",
        type=_positive_int,
        metavar="PIXELS",
        help="edge of the square tiles a raster larger than one tile is segmented in, at "
        "full resolution (default: the model's input size; sam3 1008, classic 1024)",
    )
    reading.add_argument(
        "--tile-overlap",
        type=_non_negative_int,
        metavar="PIXELS",
        help="pixels each tile shares with its neighbours (default: the model's; sam3 126, "
        "classic 64)",
    )

    run = segment.add_argument_group("run")
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the tiles (and the files of a batch) on the Dask cluster of this scheduler, "
        "e.g. tcp://HOST:8786; every worker must see the input paths (needs "
        "geolibre-ml[distributed]; see docs/distributed.md)",
    )
    run.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no per-file lines"
    )
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log what happens, and show the traceback of unexpected errors",
    )
    return segment


# Format names, repeated here so that parsing imports nothing heavy; a test keeps
# them in step with geolibre_ml.segment.writers.FORMAT_NAMES.
FORMAT_NAMES = ("geojson", "gpkg", "fgb", "parquet", "shp")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of pixels") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 pixels is not a tile size")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number of 0 or more")
    return value


def _bands(text: str) -> tuple[int, ...] | None:
    # The model server's parser of the same field, imported only when --bands is given.
    try:
        from geolibre_ml.segment.errors import InvalidRequest
        from geolibre_ml.segment.prompts import parse_bands
    except ModuleNotFoundError:  # no engine: `segment` itself says so
        return None
    try:
        return parse_bands(text)
    except InvalidRequest as exc:
        raise argparse.ArgumentTypeError(exc.render({"bands": "--bands"})) from None


#: GDAL's block cache (MiB) unless ``GDAL_CACHEMAX`` is set: tiles are read once, and
#: neighbours share only their overlap (a row of 512 px blocks of a 20,000 px wide RGB
#: raster is 30 MB), so a small cache serves them; GDAL's own default, 5 % of the
#: machine's memory, would fill up with blocks never read again.
GDAL_CACHE_MB = "64"
#: glibc malloc arenas unless ``MALLOC_ARENA_MAX`` is set: by default each thread that
#: runs tiles gets arenas of its own, and memory a tile freed stays in them.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


def _bound_process_memory() -> None:
    """Process-wide memory settings for long raster runs (engine commands only)."""
    os.environ.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MB)
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        _bound_process_memory()
    if args.command == "serve":
        from geolibre_ml.sidecar.server import run as run_sidecar

        run_sidecar(host=args.host, port=args.port)
        return 0
    if args.command == "download-model":
        from geolibre_ml.download import run as run_download

        return run_download(args)
    try:
        if args.command == "model-server":
            from geolibre_ml.modelserver.server import main as run_model_server

            return run_model_server(host=args.host, port=args.port, preload=args.preload)
    except ModuleNotFoundError as exc:
        print(f"geolibre-ml: {ENGINE_MISSING} ({exc.name} is missing)", file=sys.stderr)
        return 2
    try:
        from geolibre_ml.batch import run_segment
    except ModuleNotFoundError as exc:
        # An environment problem, not bad usage: exit 1 as for a model that cannot load.
        print(f"geolibre-ml segment: {ENGINE_MISSING} ({exc.name} is missing)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return run_segment(args)
