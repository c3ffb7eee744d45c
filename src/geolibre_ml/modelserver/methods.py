"""HTTP methods per path: ``OPTIONS`` answers and the ``Allow`` header of a 405.

Starlette matches routes one at a time, so a path served by two routes (``GET`` and
``DELETE /models``) would say ``Allow: GET`` on a 405 and refuse ``OPTIONS``. Here the
methods of every route on the path are gathered instead.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

#: The methods a path is probed for (``OPTIONS`` is answered here, ``CONNECT`` and
#: ``TRACE`` by nobody).
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def route_methods(app: ASGIApp, scope: Scope) -> set[str]:
    """The methods some route of ``app`` fully matches on ``scope``'s path (empty: unknown
    path).

    Each method is tried through the routes' public ``matches``, so routes nested in
    included routers count without relying on how the framework stores them.
    """
    routes = getattr(app, "routes", ())
    return {
        method
        for method in METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in routes)
    }


def allowed_methods(app: ASGIApp, scope: Scope) -> list[str]:
    """What ``Allow`` says for ``scope``'s path: its routes' methods plus ``OPTIONS``,
    sorted; empty when no route has that path."""
    methods = route_methods(app, scope)
    return sorted(methods | {"OPTIONS"}) if methods else []


class OptionsAnswer:
    """ASGI middleware: ``OPTIONS`` on a known path answers 204 with ``Allow``.

    Args:
        app: the application to wrap.
        routes: the application whose routes say which methods a path has (the
            FastAPI app, since ``app`` is the middleware stack inside it).
    """

    def __init__(self, app: ASGIApp, routes: ASGIApp) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            methods = route_methods(self.routes, scope)
            # A route of its own for OPTIONS, if one is ever added, answers instead.
            if methods and "OPTIONS" not in methods:
                allow = ", ".join(sorted(methods | {"OPTIONS"}))
                response = Response(status_code=204, headers={"Allow": allow})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
