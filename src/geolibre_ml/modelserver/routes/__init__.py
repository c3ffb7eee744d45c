"""The model server's routers: ``service`` (/health, /models) and ``segment`` (/segment/*)."""
