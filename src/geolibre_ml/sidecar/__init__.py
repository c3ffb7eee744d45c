"""GeoLibre's sidecar: the thin ``/ml`` reverse proxy, the model-server launcher, and the web host."""
