"""A stand-in for the Hugging Face hub on a loopback port, for download tests.

It answers the few routes ``huggingface_hub.snapshot_download`` uses, the way the hub
does (headers included, since huggingface_hub turns them into its error classes):

- ``GET /api/models/{id}[/revision/{rev}]``: the repository's info (``sha``, ``gated``).
- ``GET /api/models/{id}/tree/{rev}``: the file listing.
- ``HEAD``/``GET /{id}/resolve/{rev}/{path}``: a file, with ``X-Repo-Commit`` and ``ETag``.

As on the hub, a gated repository's info and listing are public, and its files answer
401 ``X-Error-Code: GatedRepo`` without a token, 403 ``GatedRepo`` with a valid token whose
account has no access, and 401 "Invalid credentials" with a token the hub does not know.
An unknown repository answers 401 ``RepoNotFound``; an unknown revision 404
``RevisionNotFound``. Every request is recorded so that tests can check what was fetched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class HubRepo:
    """One model repository: its files (path in the repo -> content) and access rules."""

    files: dict[str, bytes]
    gated: bool = False
    #: Tokens whose accounts were granted access (meaningful for a gated repository).
    granted: set[str] = field(default_factory=set)
    commit: str = "0123456789abcdef0123456789abcdef01234567"

    @classmethod
    def from_folder(cls, folder: Path, extra: dict[str, bytes] | None = None, **kwargs) -> HubRepo:
        """A repository holding every file of ``folder`` (not recursive), plus ``extra``."""
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        return cls(files={**files, **(extra or {})}, **kwargs)


@dataclass
class Request:
    """A request the hub received."""

    method: str
    path: str
    token: str | None


class FakeHub:
    """The hub's download routes for ``repos``, served on ``127.0.0.1`` while in a
    ``with`` block. ``tokens`` are the tokens the hub knows (valid accounts)."""

    def __init__(self, repos: dict[str, HubRepo], tokens: set[str] | None = None) -> None:
        self.repos = repos
        self.tokens = set(tokens or ()) | {t for repo in repos.values() for t in repo.granted}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fetched(self) -> set[str]:
        """Paths of the files whose content was sent (GET on ``resolve``)."""
        return {
            r.path.split("/resolve/", 1)[1].split("/", 1)[1]
            for r in self.requests
            if r.method == "GET" and "/resolve/" in r.path
        }

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                self._answer(body=True)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def _answer(self, *, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ").strip() or None
                with hub._lock:
                    hub.requests.append(Request(self.command, path, token))
                if token is not None and token not in hub.tokens:
                    return self._error(401, None, "Invalid credentials in Authorization header")
                if path.startswith("/api/models/"):
                    return self._api(path.removeprefix("/api/models/"))
                parts = path.lstrip("/").split("/", 4)
                if len(parts) == 5 and parts[2] == "resolve":
                    repo_id, revision, name = f"{parts[0]}/{parts[1]}", parts[3], parts[4]
                    return self._file(repo_id, revision, name, token, body=body)
                return self._error(404, None, "Not found")

            def _repo(self, repo_id: str, revision: str) -> HubRepo | None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    # The hub answers 401 (not 404) so as not to reveal private repositories.
                    self._error(401, "RepoNotFound", "Repository not found")
                    return None
                if revision not in ("main", repo.commit):
                    self._error(404, "RevisionNotFound", "Invalid rev id: " + revision)
                    return None
                return repo

            def _api(self, rest: str) -> None:
                owner, name, *tail = rest.split("/")
                repo_id = f"{owner}/{name}"
                if not tail or tail[0] == "revision":
                    revision = tail[1] if len(tail) > 1 else "main"
                    if (repo := self._repo(repo_id, revision)) is None:
                        return None
                    info = {
                        "_id": repo.commit[:24],
                        "id": repo_id,
                        "modelId": repo_id,
                        "sha": repo.commit,
                        "private": False,
                        "gated": "manual" if repo.gated else False,
                        "disabled": False,
                        "siblings": [{"rfilename": f} for f in repo.files],
                    }
                    return self._json(info)
                if tail[0] == "tree" and len(tail) > 1:
                    if (repo := self._repo(repo_id, tail[1])) is None:
                        return None
                    listing = [
                        {
                            "type": "file",
                            "path": f,
                            "size": len(content),
                            "oid": hashlib.sha1(content).hexdigest(),  # git's blob id is a SHA-1
                        }
                        for f, content in repo.files.items()
                    ]
                    return self._json(listing)
                return self._error(404, None, "Not found")

            def _file(
                self, repo_id: str, revision: str, name: str, token: str | None, *, body: bool
            ) -> None:
                if (repo := self._repo(repo_id, revision)) is None:
                    return None
                if repo.gated and token not in repo.granted:
                    if token is None:
                        message = (
                            f"Access to model {repo_id} is restricted. You must have access to "
                            "it and be authenticated to access it. Please log in."
                        )
                        return self._error(401, "GatedRepo", message)
                    message = (
                        f"Access to model {repo_id} is restricted and you are not in the "
                        "authorized list. Visit "
                        f"https://huggingface.co/{repo_id} to ask for access."
                    )
                    return self._error(403, "GatedRepo", message)
                if name not in repo.files:
                    return self._error(404, "EntryNotFound", f"{name} does not exist")
                content = repo.files[name]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(content)))
                self.send_header("ETag", f'"{hashlib.sha1(content).hexdigest()}"')
                self.send_header("X-Repo-Commit", repo.commit)
                self.end_headers()
                if body:
                    self.wfile.write(content)
                return None

            def _json(self, value: object) -> None:
                data = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, status: int, code: str | None, message: str) -> None:
                data = json.dumps({"error": message}).encode()
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        return Handler


@contextlib.contextmanager
def serve(repos: dict[str, HubRepo], tokens: set[str] | None = None) -> Iterator[FakeHub]:
    """``with serve({...}) as hub:``: a :class:`FakeHub` running for the block."""
    with FakeHub(repos, tokens) as hub:
        yield hub
