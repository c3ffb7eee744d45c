"""The model server: the ``samgeo-api`` protocol over :mod:`geolibre_ml.segment`."""
