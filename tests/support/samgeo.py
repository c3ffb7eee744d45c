"""segment-geospatial's own SAM 3 code (``samgeo/samgeo3.py``), importable here.

segment-geospatial 1.4.2 is installed without its dependencies (``pip install --no-deps
--target DIR``, a 160 kB wheel): its full dependency set (SAM 1 and 2, leafmap,
geopandas, ...) is not installable offline and not needed by the code we compare with.
:func:`load_samgeo3` then imports the real ``samgeo/samgeo3.py`` and the real
``samgeo/common.py``, standing in only for imports its transformers path never uses
(each stand-in is explained where it is made). The parity test and the SAM 3 benchmark
both run ``SamGeo3(backend="transformers")`` through this, so what they measure is
segment-geospatial's code, unchanged.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import types
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

from support.servers import ServerProcess, run_script

#: The segment-geospatial release the project is compatible with (CONTRACT.md).
SAMGEO_VERSION = "1.4.2"

#: segment-geospatial's real ``samgeo.api`` app with a stand-in model (see its docstring).
SAMGEO_HARNESS = Path(__file__).with_name("samgeo_harness.py")

#: Words in pip's error output that mean the package index could not be reached (as
#: opposed to a broken install): only then may a test skip instead of failing.
_OFFLINE_SIGNS = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectTimeoutError",
)


class SamgeoUnavailable(RuntimeError):
    """pip could not install segment-geospatial; ``offline`` when the index was unreachable."""

    def __init__(self, message: str, *, offline: bool) -> None:
        super().__init__(message)
        self.offline = offline


def install_samgeo(target: Path, version: str = SAMGEO_VERSION) -> Path:
    """Install segment-geospatial ``version`` without dependencies into ``target``
    (once: an existing install there is reused); return ``target``.

    Raises:
        SamgeoUnavailable: pip failed (``offline`` says whether for want of an index).
    """
    target = Path(target)
    if (target / "samgeo" / "samgeo3.py").is_file():
        return target
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-compile",
            "--upgrade",
            "--target",
            str(target),
            f"segment-geospatial=={version}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not (target / "samgeo" / "samgeo3.py").is_file():
        offline = any(sign in result.stderr for sign in _OFFLINE_SIGNS)
        raise SamgeoUnavailable(
            f"could not install segment-geospatial=={version} (set "
            f"GEOLIBRE_ML_TEST_SAMGEO_DIR to an install to run offline):\n{result.stderr}",
            offline=offline,
        )
    return target


@contextlib.contextmanager
def run_samgeo_api(samgeo_dir: Path, log_path: Path) -> Iterator[ServerProcess]:
    """segment-geospatial's ``samgeo-api`` (:data:`SAMGEO_HARNESS` over the install in
    ``samgeo_dir``) on a free loopback port, until the block ends."""
    argv = [sys.executable, str(SAMGEO_HARNESS), "--samgeo-dir", str(samgeo_dir)]
    with run_script(argv, log_path) as server:
        yield server


def load_samgeo3(samgeo_dir: Path) -> types.ModuleType:
    """Import the installed ``samgeo.samgeo3`` (segment-geospatial's SAM 3 class) and return it.

    Stand-ins, and why each is safe for ``SamGeo3(backend="transformers")``:

    - ``samgeo/__init__.py`` is not run: it star-imports ``samgeo.samgeo`` and
      ``samgeo.samgeo2``, which need the ``segment_anything`` and ``sam2`` packages (SAM 1
      and 2, not installed). A bare ``samgeo`` package pointing at the installed folder
      stands in, with the ``__version__`` of the installed distribution; ``samgeo3`` and
      ``common`` are then the real modules from that folder.
    - ``geopandas``, when it is not installed, is an empty module while ``samgeo`` is
      imported (and only then: it is taken out of ``sys.modules`` again):
      ``samgeo/common.py`` imports it at the top but uses it only in its vector-file
      helpers (``raster_to_vector`` and friends), never in ``set_image`` or
      ``generate_masks``. It holds one empty class, ``GeoDataFrame``, because function
      annotations in ``common.py`` name it when the module is imported; were a vector
      helper called, it would fail loudly (``read_file`` is missing), not silently.

    ``samgeo3.py``'s optional imports (``sam3`` for the Meta backend, scikit-image,
    scikit-learn, matplotlib for its plots) are its own ``try``/``except ImportError``
    blocks and need nothing from us. Everything its transformers path runs (image
    preparation in ``common.prepare_image_for_sam``, ``Sam3Processor``, ``Sam3Model``,
    ``post_process_instance_segmentation``, the numpy conversion) is segment-geospatial's
    and transformers' own code.
    """
    samgeo_dir = Path(samgeo_dir)
    if "samgeo.samgeo3" in sys.modules:
        return sys.modules["samgeo.samgeo3"]
    package_dir = samgeo_dir / "samgeo"
    dist_info = next(samgeo_dir.glob("segment_geospatial-*.dist-info"))
    metadata = Parser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))
    package = types.ModuleType("samgeo")
    package.__path__ = [str(package_dir)]
    package.__file__ = str(package_dir / "__init__.py")
    package.__version__ = metadata["Version"]
    sys.modules["samgeo"] = package
    stand_in = None
    try:
        import geopandas  # noqa: F401
    except ImportError:
        stand_in = sys.modules["geopandas"] = types.ModuleType("geopandas")
        # Named in common.py's annotations, which Python evaluates when it defines them.
        stand_in.GeoDataFrame = type("GeoDataFrame", (), {})
    try:
        import samgeo.samgeo3 as samgeo3
    finally:
        # Only samgeo.common holds the stand-in: later code that tries to import
        # geopandas still learns that it is not installed.
        if stand_in is not None and sys.modules.get("geopandas") is stand_in:
            del sys.modules["geopandas"]
    return samgeo3
