"""Uploads of a killed server: removed by the next server, never a live server's."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from geolibre_ml.modelserver.uploads import UploadArea, remove_stale
from support.rasters import write_raster
from support.servers import run_server

from .helpers import leftovers
from .test_limits import BOUNDARY, multipart_body, port_of


def _files_under(folder: Path, name: str) -> list[Path]:
    return [p for p in folder.rglob(name) if p.is_file()]


def test_a_killed_servers_upload_is_removed_by_the_next_server(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir)}
    rng = np.random.default_rng(5)
    big = write_raster(tmp_path / "busy.tif", rng.integers(0, 255, (3, 1500, 1500), dtype=np.uint8))
    body = multipart_body(big.read_bytes(), {"model_version": "classic"})

    with run_server(["model-server"], log_path=tmp_path / "live.log", env=env) as live:
        live_folder = tmpdir / "geolibre-ml-uploads" / str(live.process.pid)
        assert live_folder.is_dir()
        # Something of the live server's own: it must survive the next server's start-up.
        (live_folder / "request-in-flight").mkdir()
        (live_folder / "request-in-flight" / "scene.tif").write_bytes(b"busy")

        with run_server(["model-server"], log_path=tmp_path / "killed.log", env=env) as killed:
            sock = socket.create_connection(("127.0.0.1", port_of(killed)))
            sock.sendall(
                b"POST /segment/automatic HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n".encode()
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            deadline = time.monotonic() + 30
            while len(_files_under(tmpdir, "scene.tif")) < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            os.killpg(killed.process.pid, signal.SIGKILL)
            killed.process.wait(10)
            sock.close()
        stale = [p for p in _files_under(tmpdir, "scene.tif") if live_folder not in p.parents]
        assert stale, "the killed server's upload should be on disk before the next start"

        with run_server(["model-server"], log_path=tmp_path / "next.log", env=env) as following:
            assert not any(p.exists() for p in stale)
            assert not (tmpdir / "geolibre-ml-uploads" / str(killed.process.pid)).exists()
            assert (live_folder / "request-in-flight" / "scene.tif").read_bytes() == b"busy"
            assert (tmpdir / "geolibre-ml-uploads" / str(following.process.pid)).is_dir()
            assert "Removed the uploads of a stopped model server" in following.log()
        # A server that stops normally removes its own folder.
        assert not (tmpdir / "geolibre-ml-uploads" / str(following.process.pid)).exists()
        (live_folder / "request-in-flight" / "scene.tif").unlink()
        (live_folder / "request-in-flight").rmdir()
    assert leftovers(tmpdir) == []


def _dead_pid() -> int:
    """A PID no process has now (a child that has been reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_remove_stale_keeps_live_folders_and_removes_the_rest(tmp_path: Path) -> None:
    live = UploadArea(tmp_path)
    mine = live.folder()
    assert mine == tmp_path / str(os.getpid())
    dead = tmp_path / str(_dead_pid())
    (dead / "request-x").mkdir(parents=True)
    (dead / ".lock").touch()
    # A PID that is alive but does not hold the folder's lock: the PID was reused by
    # another program (here pytest's parent), so the folder's owner is gone.
    reused = tmp_path / str(os.getppid())
    (reused / "request-y").mkdir(parents=True)
    (reused / ".lock").touch()
    # Not ours: left alone.
    (tmp_path / "notes.txt").write_text("keep")

    removed = remove_stale(tmp_path)

    assert sorted(removed) == sorted([dead, reused])
    assert not dead.exists()
    assert not reused.exists()
    assert mine.is_dir()
    assert (tmp_path / "notes.txt").exists()
    live.close()
    assert not mine.exists()


def test_a_folder_without_a_lock_is_judged_by_its_pid(tmp_path: Path) -> None:
    alive = tmp_path / str(os.getppid())
    alive.mkdir()
    gone = tmp_path / str(_dead_pid())
    gone.mkdir()
    assert remove_stale(tmp_path) == [gone]
    assert alive.is_dir()


def test_each_request_gets_a_private_folder_inside_the_process_folder(tmp_path: Path) -> None:
    area = UploadArea(tmp_path)
    first, second = area.request_folder(), area.request_folder()
    assert first != second
    assert first.parent == second.parent == tmp_path / str(os.getpid())
    assert first.stat().st_mode & 0o777 == 0o700
    assert first.parent.stat().st_mode & 0o777 == 0o700
    area.close()
    assert not first.exists()


def test_a_process_folder_removed_from_outside_is_claimed_again(tmp_path: Path) -> None:
    area = UploadArea(tmp_path / "root")
    shutil.rmtree(area.folder().parent)
    request = area.request_folder()
    assert request.parent == tmp_path / "root" / str(os.getpid())
    area.close()


def test_a_root_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "root").symlink_to(target)
    with pytest.raises(RuntimeError, match="not a private folder"):
        UploadArea(tmp_path / "root").folder()
