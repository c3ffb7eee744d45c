"""The formats a result is answered in: ONE table for the synchronous answers and jobs.

The table is built from the library's two format tables, not from a list of its own:
every ``output_format`` of the samgeo-api protocol (:data:`~geolibre_ml.segment.formats.
OUTPUT_FORMATS`, written by :func:`~geolibre_ml.segment.formats.write`) and every
single-file vector format of :data:`~geolibre_ml.segment.writers.FORMATS` that the
protocol lacks (GeoPackage, FlatGeobuf, GeoParquet; written by
:func:`~geolibre_ml.segment.writers.write_features`, as the command line writes them).
Where both tables name a format (``geojson``), the protocol's writer wins, so a job's
GeoJSON is byte for byte the synchronous answer.

The synchronous ``/segment/*`` endpoints accept only the protocol's formats (see
:func:`~geolibre_ml.segment.formats.check_format`); a finished job's result may be
fetched in any format of this table (:func:`answer_format`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geolibre_ml.segment import formats, writers
from geolibre_ml.segment.errors import InvalidRequest, quoted
from geolibre_ml.segment.results import SegmentResult

#: ``Content-Disposition`` file names of the raster answers (those of samgeo-api).
FILENAMES = {"geotiff": "mask.tif", "png": "mask.png"}

#: Base name of a vector file answer that only jobs give (``segments.gpkg``).
VECTOR_STEM = "segments"


@dataclass(frozen=True)
class AnswerFormat:
    """One format a result can be answered in.

    Attributes:
        name: the ``output_format`` value (``gpkg``).
        media_type: the answer's ``Content-Type``.
        filename: the ``Content-Disposition`` attachment name, or None for none.
        extension: the extension of the file written (``.gpkg``).
        write: writes the result to a path (blocking) and returns that path.
    """

    name: str
    media_type: str
    filename: str | None
    extension: str
    write: Callable[[SegmentResult, Path], Path]


def _protocol_format(name: str) -> AnswerFormat:
    def write(result: SegmentResult, path: Path) -> Path:
        return formats.write(result, name, path)

    return AnswerFormat(name, formats.MEDIA_TYPES[name], FILENAMES.get(name), f".{name}", write)


def _vector_format(fmt: writers.VectorFormat) -> AnswerFormat:
    def write(result: SegmentResult, path: Path) -> Path:
        return writers.write_features(
            result.features,
            path,
            format=fmt.name,
            layer=formats.answer_name(result),
            shared=result.base_properties,
        )

    return AnswerFormat(
        fmt.name, fmt.media_type, f"{VECTOR_STEM}{fmt.extension}", fmt.extension, write
    )


#: Every format an answer can be given in, by ``output_format`` name.
ANSWER_FORMATS: dict[str, AnswerFormat] = {
    name: _protocol_format(name) for name in formats.OUTPUT_FORMATS
} | {
    fmt.name: _vector_format(fmt)
    for fmt in writers.FORMATS
    if fmt.single_file and fmt.name not in formats.OUTPUT_FORMATS
}


def answer_format(name: str | None) -> AnswerFormat:
    """The format called ``name`` (case and blanks ignored).

    Raises:
        InvalidRequest: listing the formats, for an unknown one.
    """
    key = (name or "").strip().lower()
    if key not in ANSWER_FORMATS:
        raise InvalidRequest(
            f"Unknown output_format {quoted(name or '')}. "
            f"Choose one of: {', '.join(ANSWER_FORMATS)}.",
            fields="output_format",
        )
    return ANSWER_FORMATS[key]
