"""GeoLibre's sidecar: the thin ``/ml`` proxy, the model-server launcher, and the web host."""
