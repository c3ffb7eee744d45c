"""Fixtures every test folder shares."""

pytest_plugins = [
    "support.sam3_fixtures",
    "support.dask_fixtures",
    "support.samgeo_fixtures",
]
