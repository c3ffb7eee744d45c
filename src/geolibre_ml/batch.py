"""Segmenting a batch of rasters into vector files: the work of ``geolibre-ml segment``.

The command line's options become one prompt, read and output options, and a
list of jobs (one raster to one vector file). The model is loaded once; each
job runs :func:`~geolibre_ml.segment.pipeline.segment_raster` and writes its
features with :func:`~geolibre_ml.segment.writers.write_features`. A bad input is
reported and the batch goes on; the exit status says what went wrong (see
:data:`EXIT_OK` and the others).
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from geolibre_ml.segment import remote
from geolibre_ml.segment.crs import parse_crs
from geolibre_ml.segment.errors import (
    ImageTooLarge,
    InvalidRequest,
    ModelUnavailable,
    SegmentError,
    SourceRefused,
    UnreadableImage,
    UnsupportedPrompt,
    no_objects,
)
from geolibre_ml.segment.models import ModelManager
from geolibre_ml.segment.pipeline import FINISH_STEPS, CancelFn, ProgressFn, segment_raster
from geolibre_ml.segment.prompts import (
    AutomaticPrompt,
    OutputOptions,
    Prompt,
    ReadOptions,
    TextPrompt,
    parse_box_labels,
    parse_box_mode,
    parse_boxes,
    parse_labels,
    parse_points,
    parse_prompts,
    point_box_prompt,
    read_options,
    text_prompt,
)
from geolibre_ml.segment.prompts import output_options as shared_output_options
from geolibre_ml.segment.results import SegmentResult
from geolibre_ml.segment.writers import (
    VectorFormat,
    format_by_name,
    format_for_path,
    write_features,
)

if TYPE_CHECKING:
    from geolibre_ml.segment.cluster import DaskRunner

#: Everything went well (finding no objects included).
EXIT_OK = 0
#: A failure that is not the user's input: the model cannot load, a file cannot be written.
EXIT_FAILURE = 1
#: Bad usage or an unreadable input.
EXIT_USAGE = 2
#: Interrupted with Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: Extensions of the images a folder input stands for (compared in lower case).
RASTER_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg")

#: Format of a folder of outputs when --format is not given.
DEFAULT_FOLDER_FORMAT = "geojson"

PROG = "geolibre-ml segment"

#: The command's flag for each field of the library's messages (the HTTP form names).
FLAGS: dict[str, str] = {
    "prompt": "--prompt",
    "prompts": "--prompts",
    "boxes": "--boxes",
    "box_labels": "--labels",
    "box_mode": "--box-mode",
    "point_coords": "--points",
    "point_labels": "--labels",
    "point_crs": "--point-crs",
    "output_crs": "--output-crs",
    "confidence_threshold": "--confidence",
    "min_size": "--min-size",
    "max_size": "--max-size",
    "simplify_tolerance": "--simplify",
    "bands": "--bands",
    "tile_size": "--tile-size",
    "tile_overlap": "--tile-overlap",
    "model_version": "--model",
    "model_id": "--model-id",
    "output_format": "--format",
}

# Errors that mean "this input (or this request) is wrong": exit 2.
_INPUT_ERRORS = (
    InvalidRequest,
    UnreadableImage,
    ImageTooLarge,
    UnsupportedPrompt,
    SourceRefused,
)


class UsageError(Exception):
    """The command line cannot be run as given (exit 2); the message says why."""


def cli_words(error: SegmentError) -> str:
    """A library message in the command's words: the fields it names as flags."""
    return error.render(FLAGS)


@dataclass(frozen=True)
class Job:
    """One raster to segment and the vector file its features go to."""

    source: Path | str  # a str: an http(s) URL, read through /vsicurl/
    output: Path
    layer: str

    @property
    def shown(self) -> str:
        """The input as messages show it (a URL without its credentials)."""
        return remote.redact(self.source) if isinstance(self.source, str) else str(self.source)

    def raster(self) -> Path | str:
        """What the pipeline opens: the file, or the URL's ``/vsicurl/`` path.

        Raises:
            SourceRefused: a URL that is not http(s).
            UnreadableImage: a URL that cannot be read, or is not a GeoTIFF.
        """
        if not isinstance(self.source, str):
            return self.source
        path = remote.check_url(self.source)
        # One ranged GET first: a missing URL or one that is not a GeoTIFF is then
        # reported in plain words rather than as what GDAL makes of it.
        remote.probe(self.source)
        return path


@dataclass
class Plan:
    """What a command line asks for: the jobs, and why some inputs give none (messages)."""

    jobs: list[Job]
    problems: list[str]
    format: VectorFormat
    folder: Path | None


# -- inputs and outputs --------------------------------------------------------------


def find_images(folder: Path, recursive: bool = False) -> list[Path]:
    """The images a folder stands for: files with a :data:`RASTER_SUFFIXES` extension.

    Hidden files are skipped; with ``recursive``, subfolders are searched too.
    Sorted by their path relative to ``folder``, so runs are reproducible.
    """
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = [
        path
        for path in candidates
        if path.suffix.lower() in RASTER_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _is_folder_output(inputs: list[str], output: str) -> bool:
    return (
        len(inputs) > 1
        or any(Path(i).is_dir() for i in inputs)
        or Path(output).is_dir()
        or output.endswith(("/", "\\"))
    )


def plan_jobs(
    inputs: list[str],
    output: str,
    *,
    format_name: str | None = None,
    recursive: bool = False,
    layer: str | None = None,
) -> Plan:
    """Turn INPUT... and -o OUTPUT into jobs, following the naming rule of ``--help``.

    One input file writes OUTPUT itself, its format from the extension (or
    ``format_name``). Otherwise OUTPUT is a folder and ``a/b.tif`` becomes
    ``OUTPUT/b.<ext>`` (``OUTPUT/<relative path>.<ext>`` for images found in a
    folder input's subfolders); inputs that differ only by their extension keep
    it (``b.tif.<ext>`` and ``b.png.<ext>``).

    Raises:
        UsageError: an output that cannot be a file or a folder as needed, an
            unknown format, or two inputs that would write the same output.
    """
    problems = []
    present: list[str] = []
    for item in inputs:
        scheme = remote.url_scheme(item)
        if scheme is not None and scheme not in remote.URL_SCHEMES:
            problems.append(
                f"{remote.redact(item)}: only http:// and https:// URLs can be read (not {scheme}:)"
            )
        elif scheme is None and not Path(item).exists():
            problems.append(f"{item}: no such file or folder")
        else:
            present.append(item)
    if not _is_folder_output(inputs, output):
        try:
            fmt = format_for_path(output, format_name)
        except InvalidRequest as exc:
            raise UsageError(
                f"{exc.detail} To write one file per input into a folder, end OUTPUT with '/'."
            ) from None
        jobs = [_job(i, Path(output), layer) for i in present]
        return Plan(jobs, problems, fmt, None)

    folder = Path(output)
    try:
        fmt = format_by_name(format_name or DEFAULT_FOLDER_FORMAT)
    except InvalidRequest as exc:
        raise UsageError(exc.detail) from None
    if folder.exists() and not folder.is_dir():
        raise UsageError(
            f"With several inputs or a folder, -o names a folder, but {output!r} is a file."
        )
    if not folder.exists() and not output.endswith(("/", "\\")):
        try:
            named = format_for_path(output)
        except InvalidRequest:
            named = None
        if named is not None:
            raise UsageError(
                f"With several inputs or a folder, -o names a folder, but {output!r} looks like "
                f"a {named.title} file. Give a folder and the format, e.g. "
                f"-o {folder.with_suffix('')}/ --format {named.name}."
            )
    named: list[tuple[Path | str, Path]] = []
    seen_sources: set[Path | str] = set()
    for item in present:
        if remote.url_scheme(item) is not None:
            if item not in seen_sources:
                seen_sources.add(item)
                named.append((item, Path(remote.url_name(item))))
            continue
        path = Path(item)
        if path.is_dir():
            images = find_images(path, recursive)
            if not images:
                where = "in it or its subfolders" if recursive else "in it (-r searches subfolders)"
                problems.append(f"{item}: no {', '.join(RASTER_SUFFIXES)} files {where}")
            pairs = [(image, image.relative_to(path)) for image in images]
        else:
            pairs = [(path, Path(path.name))]
        for source, relative in pairs:
            key: Path | str = source.resolve()
            if key not in seen_sources:
                seen_sources.add(key)
                named.append((source, relative))
    stems: dict[str, int] = {}
    for _, relative in named:
        stem = relative.with_suffix("").as_posix().lower()
        stems[stem] = stems.get(stem, 0) + 1
    jobs: list[Job] = []
    for source, relative in named:
        # scene.tif and scene.png side by side keep their extension: scene.tif.gpkg.
        shared_stem = stems[relative.with_suffix("").as_posix().lower()] > 1
        name = relative.name if shared_stem else relative.stem
        target = folder / relative.parent / (name + fmt.extension)
        jobs.append(Job(source, target, layer or relative.stem))
    _check_collisions(jobs)
    return Plan(jobs, problems, fmt, folder)


def _job(item: str, output: Path, layer: str | None) -> Job:
    """The job of one input to one output file: a URL stays a str (Path folds ``//``)."""
    if remote.url_scheme(item) is not None:
        return Job(item, output, layer or Path(remote.url_name(item)).stem)
    return Job(Path(item), output, layer or Path(item).stem)


def _check_collisions(jobs: list[Job]) -> None:
    by_output: dict[str, list[Job]] = {}
    for job in jobs:
        by_output.setdefault(job.output.as_posix().lower(), []).append(job)
    clashes = [group for group in by_output.values() if len(group) > 1]
    if clashes:
        lines = [
            f"{' and '.join(j.shown for j in group)} -> {group[0].output}" for group in clashes
        ]
        raise UsageError(
            "Several inputs would write the same output file: "
            + "; ".join(lines)
            + ". Segment them in separate runs, into different folders."
        )


# -- prompt and options ----------------------------------------------------------------


def resolve_mode(args: argparse.Namespace) -> str:
    """The mode asked for: --mode, else text with --prompt/--prompts, predict with
    boxes/points, else automatic.

    In text mode --boxes are exemplar boxes (examples of what to find), --labels
    their labels (1 positive, 0 negative) and --point-crs their CRS; in predict mode
    they are the boxes and points to segment, --labels the points' labels.

    Raises:
        UsageError: options that do not fit the mode.
    """
    has_text = bool(args.prompt and args.prompt.strip()) or bool(
        args.prompts and args.prompts.strip()
    )
    has_geometry = bool(args.boxes or args.points)
    mode = args.mode
    if mode is None:
        if has_text and has_geometry:
            raise UsageError(
                "--prompt/--prompts and --boxes/--points were both given: choose --mode text or "
                "--mode predict (in text mode, --boxes are exemplars of what to find)."
            )
        mode = "text" if has_text else "predict" if has_geometry else "automatic"
    if mode == "text" and not has_text:
        raise UsageError(
            "--mode text needs --prompt or --prompts, e.g. --prompt water or "
            """--prompts '["trees", "water"]'."""
        )
    if mode != "text":
        for flag, value in (("--prompt", args.prompt), ("--prompts", args.prompts)):
            if value is not None:
                raise UsageError(f"{flag} only applies to --mode text, not {mode}.")
    if mode != "predict" and args.box_mode is not None:
        raise UsageError(f"--box-mode only applies to --mode predict, not {mode}.")
    if mode == "text":
        if args.points:
            raise UsageError(
                "--points only apply to --mode predict; in text mode give exemplar --boxes."
            )
        if (args.labels or args.point_crs) and not args.boxes:
            raise UsageError(
                "--labels and --point-crs only apply to --mode predict, or in text mode to "
                "exemplar --boxes: add --boxes or leave them out."
            )
    if mode == "automatic" and (has_geometry or args.labels or args.point_crs):
        raise UsageError(
            "--boxes, --points, --labels and --point-crs do not apply to --mode automatic."
        )
    if mode == "predict" and args.labels and not args.points:
        raise UsageError("--labels gives one label per point: it needs --points.")
    return mode


def build_prompt(args: argparse.Namespace) -> Prompt:
    """The prompt the options describe (box/point coordinates as given, not yet pixels).

    Raises:
        UsageError: inconsistent options.
        InvalidRequest: malformed JSON or boxes.
    """
    mode = resolve_mode(args)
    if mode == "text":
        return text_prompt(
            args.prompt,
            args.confidence,
            others=parse_prompts(args.prompts),
            boxes=parse_boxes(args.boxes),
            box_labels=parse_box_labels(args.labels),
        )
    if mode == "automatic":
        return AutomaticPrompt()
    return point_box_prompt(
        parse_points(args.points),
        parse_labels(args.labels),
        parse_boxes(args.boxes),
        box_mode=parse_box_mode(args.box_mode),
    )


def output_options(args: argparse.Namespace) -> OutputOptions:
    """Size filters, output CRS and simplification from the options (the parser the
    model server's form uses too).

    Raises:
        InvalidRequest: an --output-crs PROJ does not recognise, --max-size below --min-size.
    """
    return shared_output_options(args.min_size, args.max_size, args.output_crs, args.simplify)


# -- running ---------------------------------------------------------------------------


class _Reporter:
    """Progress bar on stderr, one result line per file on stdout, problems on stderr."""

    def __init__(self, total: int, *, quiet: bool) -> None:
        self.quiet = quiet
        self.bar_enabled = not quiet and sys.stderr.isatty()
        self.bar = tqdm(
            total=total,
            unit="image",
            desc="segment",
            file=sys.stderr,
            disable=not self.bar_enabled,
            dynamic_ncols=True,
        )
        self.tiles: tqdm | None = None

    def start(self, job: Job) -> None:
        name = remote.url_name(job.source) if isinstance(job.source, str) else job.source.name
        self.bar.set_postfix_str(name, refresh=True)

    def progress(self, done: int, total: int) -> None:
        # A run reports its tiles, then its finishing steps; one tile needs no second bar.
        tiles = total - FINISH_STEPS
        if tiles <= 1 or not self.bar_enabled:
            return
        if self.tiles is None:
            self.tiles = tqdm(
                total=tiles,
                unit="tile",
                desc="tiles",
                leave=False,
                position=1,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        self.tiles.n = min(done, tiles)
        if done > tiles:
            self.tiles.set_description_str("polygons", refresh=False)
        self.tiles.refresh()

    def finish(self) -> None:
        if self.tiles is not None:
            self.tiles.close()
            self.tiles = None
        self.bar.update(1)

    def line(self, text: str) -> None:
        if not self.quiet:
            tqdm.write(text, file=sys.stdout)

    def note(self, text: str) -> None:
        if not self.quiet:
            tqdm.write(text, file=sys.stderr)

    def error(self, text: str) -> None:
        tqdm.write(f"{PROG}: error: {text}", file=sys.stderr)

    def close(self) -> None:
        if self.tiles is not None:
            self.tiles.close()
        self.bar.close()


#: ``compute(job, progress, cancelled)``: one job's result (the pipeline's run of it).
Compute = Callable[[Job, ProgressFn, "CancelFn | None"], SegmentResult]
#: Most files of a batch in flight at once on a cluster.
MAX_CLUSTER_FILES = 32


def _outcomes(
    jobs: list[Job], compute: Compute, reporter: _Reporter, runner: DaskRunner | None
) -> Iterator[tuple[Job, Callable[[], SegmentResult]]]:
    """Each job with the call that gives its result (or raises its error), in order.

    Here, a job is computed when its call is made, one after the other. On a cluster,
    files are spread too: as many jobs as the cluster has worker threads run at once
    (each planning and stitching in a thread of this process, its tiles on the
    workers), so that a folder of one-tile images keeps every worker busy; results
    are still taken, written and reported in order, and the tile bar follows the
    file being waited on.
    """
    if runner is None:
        for job in jobs:
            yield job, functools.partial(compute, job, reporter.progress, None)
        return
    width = max(2, min(MAX_CLUSTER_FILES, runner.threads()))
    stop = threading.Event()
    shown = _Shown(reporter)
    pending: deque[tuple[Job, Future[SegmentResult]]] = deque()
    todo = iter(jobs)
    with ThreadPoolExecutor(width, thread_name_prefix="geolibre-file") as pool:
        try:
            for job in todo:
                pending.append((job, pool.submit(compute, job, shown.for_job(job), stop.is_set)))
                if len(pending) >= width:
                    break
            while pending:
                job, future = pending.popleft()
                shown.current = job
                yield job, future.result
                shown.current = None
                following = next(todo, None)
                if following is not None:
                    progress = shown.for_job(following)
                    pending.append(
                        (following, pool.submit(compute, following, progress, stop.is_set))
                    )
        finally:
            # Ctrl-C, or an error: the runs in flight stop at their next check (their
            # futures are cancelled), those not started never start.
            stop.set()
            for _, future in pending:
                future.cancel()


class _Shown:
    """Forwards the progress of the job being waited on to the reporter, and only its
    (concurrent jobs report from their own threads)."""

    def __init__(self, reporter: _Reporter) -> None:
        self.reporter = reporter
        self.current: Job | None = None
        self._lock = threading.Lock()

    def for_job(self, job: Job) -> ProgressFn:
        def progress(done: int, total: int) -> None:
            with self._lock:
                if self.current is job:
                    self.reporter.progress(done, total)

        return progress


def run_segment(args: argparse.Namespace) -> int:
    """Run ``geolibre-ml segment`` from parsed arguments; returns the exit status."""
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(
            f"\n{PROG}: interrupted; finished outputs are complete, the one in progress was "
            "not written.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _usage(text: str) -> int:
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    try:
        prompt = build_prompt(args)
        # --bands is parsed by the shared parser (see cli.py); the tiles are checked here.
        tiles = read_options(None, args.tile_size, args.tile_overlap)
        read = ReadOptions(args.bands, tiles.tile_size, tiles.tile_overlap)
        output = output_options(args)
        point_crs = args.point_crs.strip() if args.point_crs and args.point_crs.strip() else None
        if point_crs:
            parse_crs(point_crs, field="point_crs")
        layer = "+".join(prompt.concepts) if isinstance(prompt, TextPrompt) else None
        plan = plan_jobs(
            args.inputs,
            args.output,
            format_name=args.format,
            recursive=args.recursive,
            layer=layer,
        )
    except UsageError as exc:
        return _usage(str(exc))
    except SegmentError as exc:
        return _usage(cli_words(exc))

    for problem in plan.problems:
        _usage(problem)
    if not plan.jobs:
        return EXIT_USAGE

    models = ModelManager()
    try:
        version, model_id = models.resolve(args.model, args.model_id)
        backend = models.get(version, model_id)
        backend.check_prompt(prompt)
    except ModelUnavailable as exc:
        print(f"{PROG}: error: {cli_words(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except SegmentError as exc:
        return _usage(cli_words(exc))

    runner: DaskRunner | None = None
    if args.scheduler and args.scheduler.strip():
        try:
            from geolibre_ml.segment.cluster import runner_for

            runner = runner_for(args.scheduler.strip())
        except ModelUnavailable as exc:  # no cluster there, or distributed not installed
            print(f"{PROG}: error: {cli_words(exc)}", file=sys.stderr)
            return EXIT_FAILURE
        if not args.quiet:
            print(f"{PROG}: on the Dask cluster at {args.scheduler.strip()}", file=sys.stderr)

    if plan.folder is not None:
        try:
            plan.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"{PROG}: error: cannot create {plan.folder}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILURE

    reporter = _Reporter(len(plan.jobs), quiet=args.quiet)
    if not args.quiet:
        reporter.note(f"model: {version} ({model_id})")
    bad_input = bool(plan.problems)
    failed = False
    written = features_total = 0

    def compute(job: Job, progress: ProgressFn, cancelled: CancelFn | None) -> SegmentResult:
        with models.lease(version, model_id) as model:
            return segment_raster(
                job.raster(),
                prompt,
                model,
                read=read,
                output=output,
                prompt_crs=point_crs,
                progress=progress,
                cancelled=cancelled,
                runner=runner,
            )

    outcomes = _outcomes(plan.jobs, compute, reporter, runner)
    try:
        for job, outcome in outcomes:
            reporter.start(job)
            try:
                result = outcome()
                job.output.parent.mkdir(parents=True, exist_ok=True)
                write_features(
                    result.features,
                    job.output,
                    format=plan.format.name,
                    layer=job.layer,
                    shared=result.base_properties,
                )
            except _INPUT_ERRORS as exc:
                bad_input = True
                reporter.error(f"{job.shown}: {cli_words(exc)}")
            except SegmentError as exc:
                failed = True
                reporter.error(f"{job.shown}: {cli_words(exc)}")
            except OSError as exc:
                failed = True
                reason = exc.strerror or str(exc)
                where = exc.filename or job.output
                reporter.error(f"{job.shown}: cannot write {where}: {reason}")
            except Exception as exc:  # a bug: say so plainly, go on with the others
                failed = True
                reporter.error(
                    f"{job.shown}: unexpected error: {type(exc).__name__}: {exc} "
                    "(run again with --verbose for the traceback, and please report it)"
                )
                if args.verbose:
                    traceback.print_exc()
            else:
                written += 1
                count = len(result.features)
                features_total += count
                if count:
                    noun = "feature" if count == 1 else "features"
                    reporter.line(f"{job.shown}: {count} {noun} -> {job.output}")
                else:
                    concepts = prompt.concepts if isinstance(prompt, TextPrompt) else ()
                    reason = cli_words(no_objects(prompt.mode, ", ".join(concepts) or None))
                    reason = reason.rstrip(".")
                    reporter.line(f"{job.shown}: {reason}; wrote an empty layer -> {job.output}")
            finally:
                reporter.finish()
    finally:
        outcomes.close()
        reporter.close()

    total = len(plan.jobs) + len(plan.problems)
    if total > 1 and not args.quiet:
        failures = total - written
        summary = f"{written} of {total} inputs segmented, {features_total} features"
        if failures:
            summary += f"; {failures} failed (see above)"
        reporter.note(summary + ".")
    if bad_input:
        return EXIT_USAGE
    return EXIT_FAILURE if failed else EXIT_OK
