"""The model server as a child process: started on first use, restarted after a crash, stopped
with the sidecar.

One child at a time: concurrent first requests wait for the same start. The child gets
``--host 127.0.0.1 --port <free port>``, its output goes line by line to the sidecar's log,
and it is ready when ``/health`` answers within the start timeout. It runs in its own process
group, so that stopping it also stops whatever it spawned (a wrapper script's Python, for
instance); on Linux it is also told to end if the sidecar dies without cleaning up (SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

import anyio
import httpx

from .backend import LaunchPlan, Target

log = logging.getLogger("geolibre_ml.sidecar")
child_log = logging.getLogger("geolibre_ml.sidecar.model_server")

#: Seconds a stopped child has to exit after SIGTERM before it gets SIGKILL.
STOP_GRACE = 5.0
#: Output lines kept to explain a failed start.
TAIL_LINES = 20
#: Environment variables the child never sees.
PRIVATE_ENV = ("GEOLIBRE_SIDECAR_TOKEN",)


class LaunchError(Exception):
    """No model server could be started; ``str(exc)`` says why and what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the sidecar dies, or ``None``.

    ``prctl`` is looked up here, before any fork, so that the child only makes one C call.
    The signal fires when the *thread* that started the child ends: children are started
    from the event loop's thread, which lives as long as the sidecar.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the sidecar died before the call above took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def terminate(process: subprocess.Popen, grace: float = STOP_GRACE) -> int | None:
    """Stop ``process`` and its process group: SIGTERM, then SIGKILL after ``grace`` seconds.

    Blocking; returns the exit status. Whatever is left in the group once the leader has
    exited (a wrapper's children) gets SIGKILL, so nothing outlives the call.
    """
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("The model server (pid %d) ignored SIGTERM; killing it.", process.pid)
            _signal_group(process, signal.SIGKILL)
            process.wait()
    _signal_group(process, signal.SIGKILL)
    return process.returncode


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            if process.poll() is None:
                process.send_signal(sig)


class ModelServerLauncher:
    """Starts, watches and stops the model server child described by a :class:`LaunchPlan`."""

    def __init__(
        self,
        plan: LaunchPlan,
        *,
        env: Mapping[str, str],
        start_timeout: float = 60.0,
        probe_timeout: float = 3.0,
    ) -> None:
        self.plan = plan
        self.env = {k: v for k, v in env.items() if k not in PRIVATE_ENV}
        self.start_timeout = start_timeout
        self.probe_timeout = probe_timeout
        self.last_error: str | None = None
        self._process: subprocess.Popen | None = None
        self._target: Target | None = None
        self._ready = False
        self._closing = False
        self._lock = asyncio.Lock()
        self._stop_lock = asyncio.Lock()
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._tail_lock = threading.Lock()
        self._pump_thread: threading.Thread | None = None

    # --- state ---------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def closing(self) -> bool:
        """Whether the sidecar is ending (no model server will be started any more)."""
        return self._closing

    @property
    def starting(self) -> bool:
        """Whether a start is under way."""
        return self._lock.locked() and not self._ready

    @property
    def exited(self) -> tuple[int, int] | None:
        """(pid, exit status) of a child that has ended since it was started, else ``None``."""
        if self._process is not None and (status := self._process.poll()) is not None:
            return self._process.pid, status
        return None

    def current(self) -> Target | None:
        """The address of a child that is running and was healthy, else ``None``."""
        if self._ready and self._process is not None and self._process.poll() is None:
            return self._target
        return None

    # --- starting ------------------------------------------------------------------------------

    async def ensure(self, client: httpx.AsyncClient) -> Target:
        """The address of a ready model server, starting one if none runs.

        Raises:
            LaunchError: the command cannot run, exits during startup, or does not answer
                ``/health`` within the start timeout.
        """
        target = self.current()
        if target is not None:
            return target
        async with self._lock:
            target = self.current()
            if target is not None:
                return target
            if self._closing:
                raise LaunchError("The sidecar is shutting down.")
            if self.plan.problem:
                raise LaunchError(self.plan.problem)
            if self._process is not None:
                status = self._process.poll()
                log.warning(
                    "The model server (pid %d) exited with status %s; starting a new one.",
                    self._process.pid,
                    status,
                )
                await anyio.to_thread.run_sync(terminate, self._process)
                self._forget()
            try:
                target = await self._start(client)
            except LaunchError as exc:
                self.last_error = str(exc)
                raise
            self.last_error = None
            return target

    async def _start(self, client: httpx.AsyncClient, attempts: int = 2) -> Target:
        for attempt in range(1, attempts + 1):
            try:
                return await self._start_once(client)
            except _PortTaken:
                if attempt == attempts:
                    raise LaunchError(
                        "The model server could not bind a loopback port; see the sidecar's log."
                    ) from None
                log.info("The chosen port was taken meanwhile; trying another one.")
        raise AssertionError("unreachable")

    async def _start_once(self, client: httpx.AsyncClient) -> Target:
        port = free_port()
        argv = [*self.plan.command, "--host", "127.0.0.1", "--port", str(port)]
        log.info("Starting the model server (%s): %s", self.plan.source, shlex.join(argv))
        with self._tail_lock:
            self._tail.clear()
        try:
            # Started from the event loop's thread on purpose: see _parent_death_hook.
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=_parent_death_hook(),
            )
        except OSError as exc:
            raise LaunchError(
                f"The model server ({self.plan.source}) could not be started: {exc.strerror}."
            ) from None
        self._process, self._target, self._ready = process, Target.local(port), False
        self._pump_thread = threading.Thread(
            target=self._pump, args=(process,), name=f"model-server-{process.pid}", daemon=True
        )
        self._pump_thread.start()

        started = time.monotonic()
        delay = 0.05
        while True:
            status = process.poll()
            if status is not None:
                self._forget()
                await anyio.to_thread.run_sync(terminate, process)
                await self._last_lines()
                with self._tail_lock:
                    tail = list(self._tail)
                if any("address already in use" in line.lower() for line in tail):
                    raise _PortTaken
                raise LaunchError(
                    f"The model server ({self.plan.source}) exited during startup with status "
                    f"{status}" + (f": {tail[-1]}" if tail else ".") + " See the sidecar's log."
                )
            if await self._healthy(client, self._target):
                self._ready = True
                log.info(
                    "The model server (pid %d) is ready at %s after %.1f s.",
                    process.pid,
                    self._target.base,
                    time.monotonic() - started,
                )
                return self._target
            if time.monotonic() - started > self.start_timeout:
                self._forget()
                await anyio.to_thread.run_sync(terminate, process)
                raise LaunchError(
                    f"The model server ({self.plan.source}) did not answer /health within "
                    f"{self.start_timeout:g} s, so it was stopped. See the sidecar's log."
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    async def _last_lines(self) -> None:
        """Wait (briefly) for the pump thread to log what the child printed before it ended."""
        thread = self._pump_thread
        if thread is not None:
            await anyio.to_thread.run_sync(thread.join, 1.0)

    async def _healthy(self, client: httpx.AsyncClient, target: Target) -> bool:
        try:
            answer = await client.get(target.url("/health"), timeout=self.probe_timeout)
            return answer.status_code == 200 and answer.json().get("status") == "ok"
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    def _pump(self, process: subprocess.Popen) -> None:
        """Copy the child's output to the sidecar's log, line by line (runs in a thread)."""
        assert process.stdout is not None
        prefix = f"[model server {process.pid}]"
        with process.stdout:
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    with self._tail_lock:
                        self._tail.append(line)
                    child_log.info("%s %s", prefix, line)

    def _forget(self) -> None:
        self._process, self._target, self._ready = None, None, False

    # --- recovering and stopping ---------------------------------------------------------------

    async def discard(self, target: Target) -> None:
        """Stop the child at ``target`` (it refused a connection) so the next call starts anew."""
        async with self._lock:
            if self._target != target or self._process is None:
                return
            process = self._process
            self._forget()
        log.warning("The model server (pid %d) stopped answering; restarting it.", process.pid)
        await anyio.to_thread.run_sync(terminate, process)

    async def stop(self) -> None:
        """Stop the child, if any, and start no other (the sidecar is ending).

        A second call waits for the first to finish, so that nothing is left running
        when either returns.
        """
        self._closing = True
        async with self._stop_lock:
            process = self._process
            self._forget()
            if process is not None:
                await anyio.to_thread.run_sync(self._stop_process, process)

    def stop_sync(self) -> None:
        """:meth:`stop` for code outside the event loop (the server's last resort)."""
        self._closing = True
        process = self._process
        self._forget()
        if process is not None:
            self._stop_process(process)

    @staticmethod
    def _stop_process(process: subprocess.Popen) -> None:
        if process.poll() is None:
            log.info("Stopping the model server (pid %d).", process.pid)
        status = terminate(process)
        log.info("The model server (pid %d) ended with status %s.", process.pid, status)


class _PortTaken(Exception):
    """The child could not bind the port chosen for it (another process took it meanwhile)."""
