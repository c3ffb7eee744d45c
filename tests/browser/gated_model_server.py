"""A model server command that refuses to start until a gate file exists.

The sidecar's ``GEOLIBRE_ML_SAMGEO_CMD`` for the "backend unreachable, then Start server"
test: the first launch fails (as a model server whose environment is not ready yet would),
so ``/ml/status`` says ``available: false`` with the reason; once the test creates the file
named by ``GEOLIBRE_TEST_MODEL_SERVER_GATE`` (the user fixed the problem), the next launch
becomes our real model server, with the ``--host``/``--port`` the sidecar appended.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

GATE_ENV = "GEOLIBRE_TEST_MODEL_SERVER_GATE"
REFUSAL = "The model server is not set up yet (the test's gate file is missing)."


def main() -> None:
    """Exit 1 with :data:`REFUSAL` without the gate file; else become the model server."""
    gate = os.environ.get(GATE_ENV, "")
    if not gate or not Path(gate).exists():
        print(REFUSAL, flush=True)
        sys.exit(1)
    argv = [sys.executable, "-m", "geolibre_ml", "model-server", *sys.argv[1:]]
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    main()
