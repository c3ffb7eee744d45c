"""The backend as the routes see it: where it is, whether it is up, and what ``/ml/status`` says.

``/ml/status`` is cheap by design: it probes ``/health`` and ``/models`` of a server that
is already known (never ``/segment``, so no model is ever loaded) and never launches one.
"""

from __future__ import annotations

import asyncio
import logging
from http.cookiejar import Cookie, CookieJar

import httpx

from .backend import LaunchPlan, Target, resolve
from .config import Settings
from .launcher import LaunchError, ModelServerLauncher
from .schemas import MlStart, MlStatus

log = logging.getLogger("geolibre_ml.sidecar")


class Unavailable(Exception):
    """No model server can be reached or started; ``str(exc)`` says what to do (503)."""


def default_model(configured: str | None, models: dict | None, serves_sam_only: bool) -> str:
    """The model the UI should default to.

    ``GEOLIBRE_ML_DEFAULT_MODEL`` when set; else, from the backend's ``/models``: ``sam3``
    when its ``ready`` says SAM 3 can load, otherwise ``classic``. A ``samgeo-api``'s
    ``/models`` has no ``ready`` and serves SAM models only: ``sam3`` when it lists it.
    """
    if configured:
        return configured
    if isinstance(models, dict):
        ready = models.get("ready")
        if isinstance(ready, dict):
            return "sam3" if ready.get("sam3") else "classic"
        listed = models.get("models")
        if isinstance(listed, dict) and listed:
            for version in ("sam3", "classic"):
                if version in listed:
                    return version
            return str(next(iter(listed)))
    return "sam3" if serves_sam_only else "classic"


class NoCookies(CookieJar):
    """A cookie jar that keeps nothing.

    The sidecar's one HTTP client serves every client of the sidecar: a cookie the backend
    set in one client's answer must never go out with another client's request. The
    ``Set-Cookie`` header itself still passes back to the client that got it.
    """

    def set_cookie(self, cookie: Cookie) -> None:
        """Keep nothing."""

    def extract_cookies(self, response: object, request: object) -> None:
        """Keep nothing."""


class Gateway:
    """The resolved backend: a fixed address, or a launcher; plus the HTTP client to it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config_error: str | None = None
        self.external: Target | None = None
        self.launcher: ModelServerLauncher | None = None
        self.plan: LaunchPlan | None = None
        try:
            resolved = resolve(settings)
        except ValueError as exc:
            self.config_error = (
                f"GEOLIBRE_ML_SAMGEO_URL is set, but {exc} Set it to the model server's base "
                "URL, e.g. http://127.0.0.1:8000."
            )
        else:
            if isinstance(resolved, Target):
                self.external = resolved
            else:
                self.plan = resolved
                self.launcher = ModelServerLauncher(
                    resolved,
                    env=settings.child_env,
                    start_timeout=settings.start_timeout,
                    probe_timeout=settings.probe_timeout,
                )
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client for every request to the backend (opened by :meth:`open`)."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> httpx.AsyncClient:
        timeout = self.settings.proxy_timeout
        auth = None
        if self.external is not None and self.external.auth is not None:
            auth = httpx.BasicAuth(*self.external.auth)
        return httpx.AsyncClient(
            auth=auth,
            # Connecting is quick or hopeless; reading and writing may wait for a model.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=8),
            follow_redirects=False,
            cookies=NoCookies(),  # httpx copies a Cookies object into a plain jar
            trust_env=False,  # a proxy from the environment must not see local traffic
        )

    async def open(self) -> None:
        """Open the HTTP client (called when the app starts)."""
        _ = self.client

    async def close(self) -> None:
        """Stop a launched model server and close the client (called when the app ends)."""
        if self.launcher is not None:
            await self.launcher.stop()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- where requests go -----------------------------------------------------------------

    @property
    def shown(self) -> str | None:
        """The backend's address as answers may show it, when known."""
        if self.external is not None:
            return self.external.shown
        if self.launcher is not None and (target := self.launcher.current()) is not None:
            return target.shown
        return None

    async def target(self) -> Target:
        """The address to send a request to, launching the model server if needed.

        Raises:
            Unavailable: with a message saying how to fix it.
        """
        if self.config_error:
            raise Unavailable(self.config_error)
        if self.external is not None:
            return self.external
        assert self.launcher is not None
        try:
            return await self.launcher.ensure(self.client)
        except LaunchError as exc:
            raise Unavailable(str(exc)) from None

    async def recover(self, target: Target) -> bool:
        """After ``target`` refused a connection: restart it if we launched it.

        Returns whether a retry may reach a fresh server.
        """
        if self.launcher is None or target == self.external:
            return False
        await self.launcher.discard(target)
        return True

    def unreachable(self, target: Target, reason: str) -> str:
        """The message for a backend that refused or dropped the connection."""
        if target == self.external:
            return (
                f"GEOLIBRE_ML_SAMGEO_URL is set to {target.shown}, but no model server answered "
                f"there ({reason}). Start it there, or fix the URL."
            )
        return f"The model server at {target.shown} could not be reached ({reason})."

    # --- status ----------------------------------------------------------------------------

    async def probe(self, target: Target) -> tuple[dict | None, dict | None, str | None]:
        """``/health`` and ``/models`` of ``target``, fetched together with a short timeout.

        Returns the two JSON answers (``None`` where missing) and, when ``/health`` failed,
        why.
        """
        timeout = self.settings.probe_timeout

        async def get(path: str) -> httpx.Response:
            return await self.client.get(
                target.url(path), params=list(target.params), timeout=timeout
            )

        health, models = await asyncio.gather(
            get("/health"), get("/models"), return_exceptions=True
        )
        if isinstance(health, BaseException):
            return None, None, _reason(health)
        if health.status_code != 200:
            return None, None, f"/health answered HTTP {health.status_code}"
        return _json(health), (None if isinstance(models, BaseException) else _json(models)), None

    async def status(self) -> MlStatus:
        """What ``/ml/status`` answers (see ``CONTRACT.md``)."""
        sam_only = self.plan is not None and self.plan.serves_sam_only
        if self.config_error:
            return self._answer(False, self.config_error, None)
        known = self.external or (self.launcher.current() if self.launcher else None)
        if known is not None:
            health, models, problem = await self.probe(known)
            if problem is None:
                where = "GEOLIBRE_ML_SAMGEO_URL"
                if known != self.external and self.plan is not None:
                    where = self.plan.source
                answer = self._answer(
                    True, f"The model server ({where}) at {known.shown} is ready.", models
                )
                answer.url = known.shown
                if health and health.get("version") is not None:
                    answer.version = str(health["version"])
                if models:
                    if isinstance(models.get("models"), dict):
                        answer.models = models["models"]
                    if isinstance(models.get("ready"), dict):
                        answer.ready = models["ready"]
                return answer
            if known == self.external:
                answer = self._answer(False, self.unreachable(known, problem), None)
                answer.url = known.shown
                return answer
            return self._answer(
                True,
                f"The model server at {known.shown} is running but did not answer its health "
                f"check ({problem}); it may be busy.",
                None,
            )
        assert self.launcher is not None and self.plan is not None
        if self.plan.problem:
            return self._answer(False, self.plan.problem, None)
        if self.launcher.starting:
            return self._answer(True, f"The model server ({self.plan.source}) is starting.", None)
        if self.launcher.last_error:
            return self._answer(False, self.launcher.last_error, None)
        if (exited := self.launcher.exited) is not None:
            return self._answer(
                True,
                f"The model server (pid {exited[0]}) exited with status {exited[1]}; it starts "
                "again on the next request, or now with POST /ml/start.",
                None,
                sam_only=sam_only,
            )
        return self._answer(
            True,
            f"The model server ({self.plan.source}) starts on first use, or now with POST "
            "/ml/start.",
            None,
            sam_only=sam_only,
        )

    def _answer(
        self, available: bool, message: str, models: dict | None, *, sam_only: bool = False
    ) -> MlStatus:
        return MlStatus(
            available=available,
            message=message,
            default_model=default_model(self.settings.default_model, models, sam_only),
        )

    async def start(self) -> MlStart:
        """``/ml/start``: launch the model server now, then answer like :meth:`status`;
        ``detail`` is set (to ``message``) when it is not available."""
        try:
            await self.target()
        except Unavailable as exc:
            answer = MlStart.model_validate((await self.status()).model_dump())
            answer.available, answer.message, answer.detail = False, str(exc), str(exc)
            return answer
        answer = MlStart.model_validate((await self.status()).model_dump())
        if not answer.available:
            answer.detail = answer.message
        return answer


def _json(response: httpx.Response) -> dict | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _reason(exc: BaseException) -> str:
    """A short, credential-free reason for a failed connection."""
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host unreachable"
    if isinstance(exc, httpx.HTTPError):
        return type(exc).__name__
    return "unexpected error"
