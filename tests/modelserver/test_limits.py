"""Upload cap (GEOLIBRE_ML_MAX_UPLOAD_MB) and clients that go away mid-request."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import numpy as np
import pytest

from geolibre_ml.modelserver.runs import Rendered, compute
from support.rasters import write_raster
from support.servers import ServerProcess, run_server

from .helpers import Images, leftovers, segment

BOUNDARY = "geolibre-test-boundary"


def file_part_head(filename: str = "big.tif") -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: image/tiff\r\n\r\n"
    ).encode()


def multipart_body(content: bytes, fields: dict[str, str]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    return (
        b"".join(parts) + file_part_head("scene.tif") + content + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def port_of(server: ServerProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


def read_http_response(sock: socket.socket, timeout: float = 30) -> tuple[int, dict]:
    """Read one HTTP/1.1 response with a Content-Length from ``sock``: status and JSON."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, json.loads(body)


@pytest.fixture(scope="module")
def capped_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("capped-tmp")


@pytest.fixture(scope="module")
def capped(
    tmp_path_factory: pytest.TempPathFactory, capped_tmpdir: Path
) -> Iterator[ServerProcess]:
    """A model server that accepts uploads of at most 1 MiB."""
    log_path = tmp_path_factory.mktemp("capped-log") / "server.log"
    env = {"GEOLIBRE_ML_MAX_UPLOAD_MB": "1", "TMPDIR": str(capped_tmpdir)}
    with run_server(["model-server"], log_path=log_path, env=env) as process:
        yield process
        log = process.log()
    assert "Traceback" not in log, log


def test_upload_over_the_cap_is_refused_on_content_length_before_the_body(
    capped: ServerProcess, capped_tmpdir: Path
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(capped), timeout=30)
    try:
        conn.putrequest("POST", "/segment/automatic")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        conn.putheader("Content-Length", str(50 * 1024 * 1024))
        conn.endheaders()
        # Not one byte of the 50 MiB body is sent: the answer comes from the headers.
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 413
    assert response.getheader("connection") == "close"
    assert "larger than this server accepts (1 MiB)" in body["detail"]
    assert "GEOLIBRE_ML_MAX_UPLOAD_MB" in body["detail"]
    assert leftovers(capped_tmpdir) == []


def test_upload_over_the_cap_is_refused_while_streaming(
    capped: ServerProcess, capped_tmpdir: Path
) -> None:
    # Chunked transfer: no Content-Length, so the server counts bytes as they come.
    sock = socket.create_connection(("127.0.0.1", port_of(capped)))
    try:
        sock.sendall(
            b"POST /segment/automatic HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        head = file_part_head()
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        chunk = bytes(64 * 1024)
        sent = 0
        # Stream up to 64 MiB, stopping as soon as the server answers.
        while sent < 64 * 1024 * 1024 and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
            sent += len(chunk)
        status, body = read_http_response(sock)
    finally:
        sock.close()
    assert status == 413
    assert "larger than this server accepts (1 MiB)" in body["detail"]
    assert sent < 32 * 1024 * 1024  # refused long before the end of the stream
    assert leftovers(capped_tmpdir, timeout=5) == []


def test_upload_under_the_cap_is_served(
    capped: ServerProcess, capped_tmpdir: Path, images: Images
) -> None:
    assert images.png.stat().st_size < 1024 * 1024
    with httpx.Client(base_url=capped.url, timeout=60) as client:
        response = segment(client, "text", images.png, {"prompt": "water"})
        assert response.status_code == 200
        assert client.get("/health").status_code == 200
    assert leftovers(capped_tmpdir) == []


def test_client_disconnecting_mid_upload_leaves_nothing(
    server: ServerProcess, server_tmpdir: Path, client: httpx.Client, images: Images
) -> None:
    body = multipart_body(bytes(3 * 1024 * 1024), {"model_version": "classic"})
    sock = socket.create_connection(("127.0.0.1", port_of(server)))
    sock.sendall(
        b"POST /segment/automatic HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[: 2 * 1024 * 1024]  # past the 1 MiB the parser keeps in memory
    )
    time.sleep(0.3)
    sock.close()
    assert leftovers(server_tmpdir, timeout=10) == []
    # The server goes on serving.
    assert segment(client, "text", images.png, {"prompt": "water"}).status_code == 200


def test_client_disconnecting_during_the_run_cancels_it(
    server: ServerProcess, server_tmpdir: Path, client: httpx.Client, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    big = write_raster(tmp_path / "busy.tif", rng.integers(0, 255, (3, 1500, 1500), dtype=np.uint8))
    body = multipart_body(big.read_bytes(), {"model_version": "classic"})
    before = server.log().count(": cancelled (")
    sock = socket.create_connection(("127.0.0.1", port_of(server)))
    sock.sendall(
        b"POST /segment/automatic HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    # The request's private directory appears once the upload is in, just before the run.
    deadline = time.monotonic() + 30
    while not leftovers(server_tmpdir) and time.monotonic() < deadline:
        time.sleep(0.005)
    sock.close()
    assert leftovers(server_tmpdir, timeout=30) == []
    deadline = time.monotonic() + 30
    while server.log().count(": cancelled (") == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.log().count(": cancelled (") == before + 1
    assert client.get("/health").status_code == 200


def _disconnect_after(seconds: float | None):  # type: ignore[no-untyped-def]
    """What :func:`compute` waits on: a client that leaves after ``seconds`` (None: stays)."""

    async def disconnected() -> None:
        if seconds is None:
            await anyio.sleep_forever()
        await anyio.sleep(seconds)

    return disconnected


def _outcome(cancelled) -> Rendered:  # type: ignore[no-untyped-def]
    word = "cancelled" if cancelled() else "finished"
    return Rendered(Path(word), "text/plain", None, 0)


def _wait_for_cancel(cancelled) -> Rendered:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 5
    while not cancelled() and time.monotonic() < deadline:
        time.sleep(0.01)
    return _outcome(cancelled)


def test_compute_tells_the_work_when_the_client_disconnects() -> None:
    async def main() -> str:
        limiter = anyio.CapacityLimiter(1)
        result = await compute(_disconnect_after(0.05), limiter, _wait_for_cancel)
        return result.path.name

    assert anyio.run(main) == "cancelled"


def test_compute_runs_to_the_end_while_the_client_stays() -> None:
    def work(cancelled) -> Rendered:  # type: ignore[no-untyped-def]
        time.sleep(0.2)
        return _outcome(cancelled)

    async def main() -> str:
        limiter = anyio.CapacityLimiter(1)
        result = await compute(_disconnect_after(None), limiter, work)
        return result.path.name

    assert anyio.run(main) == "finished"
