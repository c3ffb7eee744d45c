"""pytest fixtures for the Dask tests: one real ``distributed.LocalCluster`` of worker
processes for the session (2 workers of 1 thread each: this machine's 2 cores).

Registered by tests/conftest.py. Each worker offers one unit of the ``GPU`` resource,
so SAM 3 tiles (which ask for it) run there too, on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """The session's LocalCluster (worker processes, restarted by their nannies)."""
    distributed = pytest.importorskip("distributed")
    from geolibre_ml.segment import cluster

    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        resources={"GPU": 1},
        dashboard_address=None,
        # The workers take the models' environment (GEOLIBRE_ML_DEVICE...) from ours.
        silence_logs=40,
    ) as local:
        yield local
        cluster.close_runners()


@pytest.fixture(scope="session")
def dask_client(dask_cluster: Any) -> Iterator[Any]:
    """A client of the session's cluster."""
    import distributed

    with distributed.Client(dask_cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        yield client
