"""geolibre-ml: promptable segmentation of geospatial imagery into GIS-ready polygons.

The package has four parts, each importable on its own:

- :mod:`geolibre_ml.segment`: the library (rasters in, polygons out; no HTTP).
- :mod:`geolibre_ml.modelserver`: a samgeo-api compatible FastAPI model server.
- :mod:`geolibre_ml.sidecar`: GeoLibre's thin ``/ml`` reverse proxy and web host.
- :mod:`geolibre_ml.cli`: the ``geolibre-ml`` command.
"""

__version__ = "0.1.0"
