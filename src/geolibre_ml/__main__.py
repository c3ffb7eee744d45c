"""``python -m geolibre_ml``: the same as the ``geolibre-ml`` command."""

from geolibre_ml.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
