"""Background processes of the local stack (the broker and the services): their command lines,
waiting for them to end, and the file lock that keeps two commands from racing. Linux only
(/proc)."""

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

log = logging.getLogger(__name__)

POLL_S = 0.1
KILL_WAIT_S = 10.0


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def process_args(pid: int) -> list[str] | None:
    """The command line of a live process, or None when it is gone (or a zombie, which an init
    that does not reap would keep forever)."""
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        args = (proc / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if stat.rpartition(")")[2].split()[0] == "Z":
        return None
    return [a.decode(errors="replace") for a in args.split(b"\0") if a]


def wait_gone(pid: int, timeout_s: float, child: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether process ``pid`` ended within ``timeout_s``; ``child`` is its Popen handle when
    this process started it (waiting on it also reaps it)."""
    if child is not None and child.pid == pid:
        try:
            child.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout_s
    while process_args(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def terminate(pid: int, timeout_s: float, child: subprocess.Popen[bytes] | None, what: str) -> None:
    """SIGTERM process ``pid`` and wait for it to end; SIGKILL it after ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):  # it may have just exited
        os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout_s, child):
        log.warning("%s pid %d ignored SIGTERM for %.0f s; killing it", what, pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid, KILL_WAIT_S, child)
    log.info("stopped %s pid %d", what, pid)


class BackgroundServer:
    """A server process this code starts and stops (the broker, Qdrant), its pid in
    ``pid_path``: in a ``with`` block it is started and ready inside, and stopped after."""

    pid_path: Path
    _process: subprocess.Popen[bytes] | None

    def owns(self, args: list[str]) -> bool:
        """Whether a process with this command line is this server."""
        raise NotImplementedError

    def running_pid(self) -> int | None:
        """The pid of the server started from this data folder, if it still runs."""
        if self._process is not None and self._process.poll() is None:
            return self._process.pid
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        args = process_args(pid)
        # The pid may have been reused by another process since the server ended.
        return pid if args is not None and self.owns(args) else None

    def start(self) -> None:
        raise NotImplementedError

    def wait_ready(self) -> None:
        raise NotImplementedError

    def stop(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
