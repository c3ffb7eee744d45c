"""Tiny model-server stand-ins for failure modes, run as real processes by the sidecar tests.

    python fake_backend.py MODE [--host H] [--port P]

Modes:

- ``echo``: ``/health`` answers; every other request is answered with a JSON description of
  what arrived (method, path, query, headers, body size and SHA-256), plus headers that a
  proxy must drop (``access-control-allow-origin``) or keep (``x-backend``). ``GET
  /jobs/stream`` sends one event, then waits for ``POST /release`` before the last one.
  A query ``answer_bytes=N`` pads the JSON answer with spaces to N bytes, sent with a
  ``Content-Length`` (so that a client knows it has the whole answer at its last byte).
  Paths ending in ``/set-cookie`` also answer ``Set-Cookie: backend-session=...``, as a
  server behind a login might.
- ``hang``: ``/health`` answers; ``POST /segment/*`` reads the whole upload, says so on
  stderr, then never answers; SIGTERM ends it at once, without an answer.
- ``unhealthy``: listens, but ``/health`` always answers 503.
- ``exit``: prints a line to stderr and exits with status 3 at once.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys
from urllib.parse import parse_qsl

import uvicorn

RELEASED = asyncio.Event()


async def read_body(receive) -> bytes:
    digest, size = hashlib.sha256(), 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        digest.update(chunk)
        size += len(chunk)
        more = message.get("more_body", False)
    return json.dumps({"size": size, "sha256": digest.hexdigest()}).encode()


async def answer(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


def make_app(mode: str):
    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    if mode == "hang":
                        # Die at once when stopped, as a busy server killed by its parent
                        # would (set here, after uvicorn has installed its own handlers).
                        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/health":
            if mode == "unhealthy":
                await answer(send, 503, b'{"status": "starting"}')
            else:
                await answer(send, 200, b'{"status": "ok", "version": "fake"}')
            return
        if mode == "hang" and path.startswith("/segment/"):
            size = json.loads(await read_body(receive))["size"]
            print(f"hang: read {size} bytes, now hanging", file=sys.stderr, flush=True)
            await asyncio.Event().wait()  # never set
        if path == "/models":
            body = {"models": {"fake": ["one"]}, "loaded": []}
            await answer(send, 200, json.dumps(body).encode())
            return
        if path == "/release":
            RELEASED.set()
            await answer(send, 200, b"{}")
            return
        if path == "/jobs/stream":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            await send(
                {"type": "http.response.body", "body": b"data: first\n\n", "more_body": True}
            )
            await RELEASED.wait()
            await send({"type": "http.response.body", "body": b"data: last\n\n"})
            return
        body = json.loads(await read_body(receive))
        echo = {
            "method": scope["method"],
            "path": path,
            "raw_path": (scope.get("raw_path") or b"").decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            "body": body,
        }
        headers = [
            (b"access-control-allow-origin", b"*"),
            (b"x-backend", b"echo"),
            (b"content-disposition", b'attachment; filename="echo.json"'),
        ]
        if path.endswith("/set-cookie"):
            headers.append((b"set-cookie", b"backend-session=client-a-only; Path=/"))
        data = json.dumps(echo).encode()
        query = dict(parse_qsl(echo["query"]))
        if "answer_bytes" in query:
            data = data.ljust(int(query["answer_bytes"]))
            headers.append((b"content-length", str(len(data)).encode()))
        await answer(send, 207, data, headers)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["echo", "hang", "unhealthy", "exit"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.mode == "exit":
        print("fake backend: cannot start (on purpose)", file=sys.stderr)
        raise SystemExit(3)
    uvicorn.run(
        make_app(args.mode),
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=1,  # the hanging request would hold a graceful stop forever
    )


if __name__ == "__main__":
    main()
