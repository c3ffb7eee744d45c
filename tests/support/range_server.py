"""A static file server on loopback that honours ``Range: bytes=a-b`` and counts what it
sends, as a web server or object store serving cloud-optimised GeoTIFFs does."""

from __future__ import annotations

import email.utils
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Served:
    """What the test HTTP server sent: bytes per file name, and the requests it saw."""

    bytes_sent: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.bytes_sent.clear()
            self.requests.clear()


def _handler(folder: Path, served: Served) -> type[BaseHTTPRequestHandler]:
    class RangeHandler(BaseHTTPRequestHandler):
        """GET/HEAD of the files in ``folder``, honouring ``Range: bytes=a-b``."""

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _file(self) -> Path | None:
            path = folder / self.path.lstrip("/").split("?")[0]
            return path if path.is_file() else None

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, *, body: bool) -> None:
            with served.lock:
                served.requests.append(f"{self.command} {self.path} {self.headers.get('Range')}")
            path = self._file()
            if path is None:
                self.send_error(404, "Not Found")
                return
            data = path.read_bytes()
            stat = path.stat()
            start, end, status = 0, len(data) - 1, 200
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
            if match:
                first, last = match.groups()
                if first:
                    start = int(first)
                    end = min(int(last), end) if last else end
                else:
                    start = max(0, len(data) - int(last))
                status = 206
            chunk = data[start : end + 1]
            self.send_response(status)
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("ETag", f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"')
            self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            if body:
                self.wfile.write(chunk)
                with served.lock:
                    served.bytes_sent[path.name] = served.bytes_sent.get(path.name, 0) + len(chunk)

    return RangeHandler


@dataclass(frozen=True)
class FileServer:
    url: str
    folder: Path
    served: Served


@contextmanager
def serve_folder(folder: Path) -> Iterator[FileServer]:
    """Serve ``folder``'s files at ``http://127.0.0.1:PORT/NAME`` until the block ends."""
    served = Served()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(folder, served))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield FileServer(f"http://127.0.0.1:{httpd.server_address[1]}", folder, served)
    finally:
        httpd.shutdown()
        httpd.server_close()
