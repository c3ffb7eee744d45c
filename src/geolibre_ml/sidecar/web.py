"""The web app's files at ``/``, mounted behind the API without answering for it.

The mount at ``/`` matches every path, so a request that names an API route with the
wrong method (``GET /ml/start``) would otherwise reach the static files and get their 404,
or their 405 with ``Allow: GET, HEAD``. Here such a request gets 405 with the route's own
methods, and an unknown ``/ml/...`` path a JSON 404; everything else is the web app's.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from pathlib import Path

from starlette.routing import BaseRoute, Match, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from .security import refuse

#: Path prefix of the API proper; nothing under it is a file of the web app.
API_PREFIX = "/ml"

# The page's ES modules load only when served as JavaScript; a machine's own MIME table
# (the Windows registry, a stray /etc/mime.types) may say otherwise for .js or .mjs.
for _suffix in (".js", ".mjs"):
    mimetypes.add_type("text/javascript", _suffix)
mimetypes.add_type("application/geo+json", ".geojson")


class WebApp:
    """Static files (``index.html`` for folders), after the API's method and path checks.

    Args:
        directory: the web app's folder, or ``None`` for no web app (then every path the
            API does not know gets a JSON 404).
        routes: the API's routes (those that are not plain routes, such as included
            routers, are skipped: give their routes).
    """

    def __init__(self, directory: Path | None, routes: Sequence[BaseRoute]) -> None:
        self.files = StaticFiles(directory=directory, html=True) if directory else None
        self.routes = routes

    def allowed_methods(self, scope: Scope) -> set[str]:
        """The methods of the API routes whose path matches ``scope``'s (none: not an API path)."""
        allowed: set[str] = set()
        for route in self.routes:
            if isinstance(route, Route) and route.methods:
                match, _ = route.matches(scope)
                if match is not Match.NONE:
                    allowed |= route.methods
        return allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if allowed := self.allowed_methods(scope):
                methods = sorted(allowed)
                await refuse(
                    send,
                    405,
                    f"{method} is not allowed on {path}: use {' or '.join(methods)}.",
                    [(b"allow", ", ".join(methods).encode())],
                )
                return
            if self.files is None or path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                await refuse(
                    send,
                    404,
                    f"The sidecar has no endpoint at {path}; its endpoints are listed at /docs.",
                )
                return
        if self.files is not None:
            await self.files(scope, receive, send)
