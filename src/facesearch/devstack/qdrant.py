"""A real Qdrant server for tests and the local stack: Qdrant's own binary (``qdrant``, from
Qdrant's releases or built from its source) on 127.0.0.1, its storage, log and pid file in one
data folder. On the development machines ``../shared/bin/qdrant`` is one (v1.18.3)."""

import json
import logging
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from facesearch.devstack.processes import BackgroundServer, terminate
from facesearch.errors import ConfigError, FaceSearchError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
# Where a source checkout finds the development machines' binary: <repo>/../shared/bin/qdrant.
SHARED_BINARY = Path(__file__).resolve().parents[4] / "shared" / "bin" / "qdrant"
SAVED = "server.json"  # the binary and ports of the server started from a data folder


class QdrantServerError(FaceSearchError):
    """The Qdrant server could not be found, started, reached or stopped."""

    code = "qdrant_server"


def find_binary(env: Mapping[str, str]) -> Path | None:
    """``QDRANT_BIN`` if set, else ``../shared/bin/qdrant`` beside the checkout, else ``qdrant``
    on PATH; None when there is none."""
    given = env.get("QDRANT_BIN", "").strip()
    if given:
        return Path(given).expanduser()
    if SHARED_BINARY.is_file():
        return SHARED_BINARY
    found = shutil.which("qdrant")
    return Path(found) if found else None


def require_binary(env: Mapping[str, str]) -> Path:
    binary = find_binary(env)
    if binary is None or not os.access(binary, os.X_OK):
        where = binary or "QDRANT_BIN, ../shared/bin/qdrant or PATH"
        raise ConfigError(
            f"no Qdrant server binary at {where}: set QDRANT_BIN to one (Qdrant's releases "
            "ship it), or leave the search service on the embedded index"
        )
    return binary


class QdrantServer(BackgroundServer):
    """One Qdrant server started from ``binary``, listening on ``http_port`` (REST) and
    ``grpc_port`` on 127.0.0.1, keeping everything in ``data_dir``."""

    def __init__(self, binary: Path, data_dir: Path, http_port: int, grpc_port: int) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.log_path = data_dir / "qdrant.log"
        self.pid_path = data_dir / "qdrant.pid"
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> "QdrantServer | None":
        """The server last started from ``data_dir`` (None if none was): its binary and ports,
        as ``start`` recorded them."""
        try:
            saved = json.loads((data_dir / SAVED).read_text())
            return cls(Path(saved["binary"]), data_dir, saved["http_port"], saved["grpc_port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def url(self) -> str:
        """What QDRANT_URL names to reach it."""
        return f"http://{HOST}:{self.http_port}"

    def environment(self) -> dict[str, str]:
        return {
            "QDRANT__SERVICE__HOST": HOST,
            "QDRANT__SERVICE__HTTP_PORT": str(self.http_port),
            "QDRANT__SERVICE__GRPC_PORT": str(self.grpc_port),
            "QDRANT__STORAGE__STORAGE_PATH": str(self.data_dir / "storage"),
            "QDRANT__STORAGE__SNAPSHOTS_PATH": str(self.data_dir / "snapshots"),
            "QDRANT__TELEMETRY_DISABLED": "true",
        }

    def start(self) -> None:
        """Launch the server in the background; it is usable once ``wait_ready`` returns."""
        pid = self.running_pid()
        if pid is not None:
            raise QdrantServerError(
                f"a Qdrant server already runs from {self.data_dir} (pid {pid})"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        saved = {"binary": str(self.binary), "http_port": self.http_port}
        (self.data_dir / SAVED).write_text(json.dumps({**saved, "grpc_port": self.grpc_port}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("QDRANT__")}
        with self.log_path.open("wb") as output:
            try:
                self._process = subprocess.Popen(
                    [str(self.binary)],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,  # it writes only under the paths given
                    env={**env, **self.environment()},
                    start_new_session=True,
                )
            except OSError as exc:  # not there, not executable
                raise QdrantServerError(
                    f"cannot run the Qdrant server binary {self.binary}: {exc.strerror}; set "
                    "QDRANT_BIN to Qdrant's server binary"
                ) from exc
        self.pid_path.write_text(f"{self._process.pid}\n")
        log.info("started Qdrant pid %d at %s", self._process.pid, self.url)

    def owns(self, args: list[str]) -> bool:
        return bool(args) and Path(args[0]).name == self.binary.name

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer:
                return int(answer.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Return once ``/readyz`` answers 200; raise quoting its log if it exits first or does
        not answer in time."""
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.running_pid() is None:
                raise self._failure("exited before it was ready")
            if time.monotonic() > deadline:
                raise self._failure(f"did not answer within {timeout:.0f} s")
            time.sleep(0.1)
        log.info("Qdrant ready at %s", self.url)

    def _failure(self, what: str) -> QdrantServerError:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        tail = "\n".join(text.splitlines()[-10:])
        return QdrantServerError(
            f"the Qdrant server at {self.url} {what}. {self.log_path}:\n{tail}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """SIGTERM the server and wait for it (SIGKILL after ``timeout``); False when none ran."""
        pid = self.running_pid()
        if pid is not None:
            terminate(pid, timeout, self._process, "Qdrant")
        self._process = None
        return pid is not None
