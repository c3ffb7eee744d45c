"""The sidecar's guards: loopback ``Host``, allowed origins (CORS), the shared token, redaction.

The sidecar listens on loopback and may launch heavy work, so three checks stand in front
of every request, outermost first:

1. :class:`HostGuard`: only loopback ``Host`` headers, so that a web page on another
   domain resolving to 127.0.0.1 (DNS rebinding) cannot talk to it.
2. :class:`OriginGuard`: a browser request from an origin that is not the app's own or
   GeoLibre's is refused outright (CORS headers alone would still let a cross-site form
   post run, e.g. ``/shutdown``); allowed origins get the CORS headers they need.
3. :class:`TokenGuard`: when ``GEOLIBRE_SIDECAR_TOKEN`` is set, the token, compared in
   constant time on raw header bytes.

All three are plain ASGI middleware: they never touch the request body, so uploads
stream through untouched.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from starlette.types import ASGIApp, Receive, Scope, Send

#: Origins of GeoLibre's desktop webview and of its Vite dev server.
GEOLIBRE_ORIGINS = frozenset(
    {
        "tauri://localhost",
        "http://tauri.localhost",
        "http://localhost:5173",
        "http://127.0.0.1:5173",
    }
)
#: Request headers a browser may send cross-origin (answered to preflights).
ALLOWED_HEADERS = "Content-Type, X-GeoLibre-Token, Authorization, Last-Event-ID"
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
#: Response headers a cross-origin script may read besides the CORS-safelisted ones.
EXPOSED_HEADERS = "Content-Disposition, Content-Length, Retry-After, Location"

TOKEN_HEADER = b"x-geolibre-token"


# --- redaction -------------------------------------------------------------------------------


def has_authority(url: str) -> bool:
    """Whether ``url`` has a ``//host`` part, so that its user info can be told apart.

    Without one (``user:secret@host:8000``, ``http:user:secret@host``) the parser reads
    the user name as a scheme and the password as a path.
    """
    try:
        return bool(urlsplit(url).netloc)
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """``url`` with credentials hidden: user info and query values become ``***``.

    Used for every URL that reaches an answer or a log line. An unparsable URL, or one
    without a ``//host`` part (whose password the parser would take for a path), is
    hidden whole.
    """
    if not has_authority(url):
        return "***"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "***"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username is not None or parts.password is not None:
        netloc = "***@" + netloc
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class Redactor:
    """Replaces secrets (the backend URL's credentials, the token) in text with ``***``."""

    #: Shorter secrets are hidden only as part of the whole URL or user info, so that a
    #: one-letter password does not blank every occurrence of that letter in the log.
    MIN_LENGTH = 4

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        unique = {s for s in secrets if s}
        self._secrets = sorted(unique, key=len, reverse=True)

    @classmethod
    def for_settings(cls, samgeo_url: str | None, token: str | None) -> Redactor:
        """The redactor for a backend URL (its user info and query values) and a token."""
        always = [s for s in (token, samgeo_url) if s]
        parts_: list[str] = []
        readings = []
        if samgeo_url:
            readings.append(samgeo_url)
            if not has_authority(samgeo_url):
                # Read a URL written without ``//`` both ways a person may have meant it:
                # all of it, or what follows a scheme, as ``user:password@host``.
                readings.append("//" + samgeo_url)
                readings.append("//" + samgeo_url.partition(":")[2].lstrip("/"))
        for reading in readings:
            try:
                parts = urlsplit(reading)
                userinfo, _, _ = parts.netloc.rpartition("@")
                always.append(userinfo)
                parts_ += [parts.username or "", parts.password or ""]
                parts_ += [value for _, value in parse_qsl(parts.query)]
            except ValueError:
                pass
        return cls([*always, *(s for s in parts_ if len(s) >= cls.MIN_LENGTH)])

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


class RedactingFormatter(logging.Formatter):
    """A log formatter that hides secrets in the whole formatted record (tracebacks too)."""

    def __init__(self, fmt: str, redactor: Redactor) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


# --- helpers on raw ASGI messages ------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


async def refuse(send: Send, status: int, detail: str, headers: Iterable = ()) -> None:
    """Answer a raw ASGI request with ``status`` and ``{"detail": detail}`` (JSON)."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def host_of(value: bytes) -> str | None:
    """The host name in a ``Host`` header value (port and IPv6 brackets removed), lower case."""
    try:
        text = value.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end >= 0 else ""
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        return text[1:end]
    name, _, port = text.partition(":")
    if port and not port.isdigit():
        return None
    return name


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` names this machine over loopback (``localhost``, 127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HostGuard:
    """Refuses (400) any request whose ``Host`` is not loopback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = _header(scope, b"host")
        if raw is None or not is_loopback_host(host_of(raw)):
            await refuse(
                send,
                400,
                "The sidecar answers only requests addressed to this machine over loopback "
                "(Host: 127.0.0.1, localhost or [::1]).",
            )
            return
        await self.app(scope, receive, send)


class OriginGuard:
    """CORS for the app's own origin and GeoLibre's; any other browser origin gets 403.

    The app's own origin is ``http://`` plus the request's ``Host`` (already known to be
    loopback), so the page works whatever port the sidecar listens on.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str] = GEOLIBRE_ORIGINS) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    def allows(self, origin: str, scope: Scope) -> bool:
        """Whether a browser page at ``origin`` may use the sidecar."""
        if origin in self.allowed:
            return True
        host = _header(scope, b"host")
        return host is not None and origin == "http://" + host.decode("latin-1").lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = _header(scope, b"origin")
        if raw is None:
            await self.app(scope, receive, send)
            return
        origin = raw.decode("latin-1").strip().lower()
        if not self.allows(origin, scope):
            await refuse(
                send,
                403,
                "This origin may not use the sidecar. Allowed: the sidecar's own pages and "
                "GeoLibre (" + ", ".join(sorted(self.allowed)) + ").",
            )
            return
        cors = [(b"access-control-allow-origin", raw.strip()), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *cors,
                        (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
                        (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                        (b"access-control-max-age", b"600"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", ())
                    if not k.lower().startswith(b"access-control-")
                ]
                headers += [*cors, (b"access-control-expose-headers", EXPOSED_HEADERS.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)


def presented_tokens(scope: Scope) -> list[bytes]:
    """Every token the request presents: ``X-GeoLibre-Token`` values and Bearer credentials."""
    found = []
    for key, value in scope.get("headers", ()):
        if key == TOKEN_HEADER:
            found.append(value.strip())
        elif key == b"authorization" and value[:7].lower() == b"bearer ":
            found.append(value[7:].strip())
    return found


def token_matches(expected: bytes, scope: Scope) -> bool:
    """Whether the request carries ``expected``, compared in constant time on raw bytes.

    Header values are bytes in ASGI, so no decoding can fail on odd bytes: a mismatch is
    just a mismatch. Each presented value is compared, so the time taken does not depend
    on which one (if any) matched.
    """
    matched = False
    for candidate in presented_tokens(scope):
        matched |= hmac.compare_digest(candidate, expected)
    return matched


class TokenGuard:
    """Requires the shared token on every request but ``/health`` and CORS preflights (401)."""

    EXEMPT_PATHS = frozenset({"/health"})

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode("utf-8") if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.token is None
            or scope["type"] != "http"
            or scope["path"] in self.EXEMPT_PATHS
            or (scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"))
            or token_matches(self.token, scope)
        ):
            await self.app(scope, receive, send)
            return
        await refuse(
            send,
            401,
            "Missing or invalid sidecar token: send it as X-GeoLibre-Token: <token> or "
            "Authorization: Bearer <token> (the value of GEOLIBRE_SIDECAR_TOKEN).",
            [(b"www-authenticate", b"Bearer")],
        )
