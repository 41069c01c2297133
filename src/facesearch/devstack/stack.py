"""The local stack (docs/architecture.md): the Kafka broker of ``devstack.broker`` and the
four services, each ``python -m facesearch_services.<name>``, as background processes of one
data folder.

Layout under the data folder (the CLI's home):

    stack/kafka/            the broker's data folder (its config, partitions, pid and log)
    stack/qdrant-server/    with a Qdrant server: its storage, log, pid and ports
    stack/logs/<name>.log   stdout and stderr of each service; kafka.log and qdrant.log link to
                            the broker's and the server's
    stack/<name>.pid        the pid of each running service (search-2, ... for replicas)
    stack/admin-key.json    an admin API key for the gateway, for its owner (devstack.keys)
    keys.jsonl              the API keys the gateway accepts (salted hashes; facesearch keys)
    qdrant/                 the index: the search service opens the one embedded mode uses,
                            unless the stack runs a Qdrant server (or QDRANT_URL names one)

Services read their settings from the environment as everywhere else (``rpc.settings``);
the stack adds only what ties them together: the broker's address, loopback hosts, the
gateway's addresses of the others and its keys file, the index path and FACESEARCH_HOME.
Linux only (/proc).
"""

import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from facesearch.devstack.broker import Broker, free_port
from facesearch.devstack.keys import ensure_admin_key, keys_path, read_stack_key
from facesearch.devstack.processes import file_lock, process_args, wait_gone
from facesearch.devstack.qdrant import QdrantServer, require_binary
from facesearch.devstack.topics import ensure_topics, stack_topics
from facesearch.errors import ConfigError, FaceSearchError
from facesearch.rpc.health import SERVING, UNREACHABLE, check
from facesearch.rpc.settings import (
    DetectorSettings,
    EmbedderSettings,
    GatewaySettings,
    SearchSettings,
    ServerSettings,
)
from facesearch.rpc.tls import ClientTls, read_client_tls
from facesearch.settings import EnvReader

log = logging.getLogger(__name__)

KAFKA = "kafka"
QDRANT = "qdrant"
SERVICES = ("search", "embedder", "detector", "gateway")  # start order; down goes backwards
# Replica N of the search service is "search-N", its ports N - 1 times this above the first's.
REPLICA_PORT_STEP = 10
LOOPBACK = "127.0.0.1"
DEFAULT_KAFKA_PORT = 9092
KAFKA_PORT_ENV = "FACESEARCH_STACK_KAFKA_PORT"
CONTROLLER_PORT_ENV = "FACESEARCH_STACK_KAFKA_CONTROLLER_PORT"
READY_TIMEOUT_S = 180.0  # per component: the services load ONNX models on a small machine
STOP_GRACE_S = 10.0  # after a service's drain seconds, before SIGKILL
DEFAULT_DRAIN_S = 20.0  # a service's drain seconds when its environment cannot be read
INTERNAL_TLS = "FACESEARCH_INTERNAL_TLS"  # the gateway's client TLS, also the stack's probe's
STOPPED = "STOPPED"  # the health of a component whose process does not run
POLL_S = 0.25
LOG_TAIL_LINES = 20

_SERVER_OF: dict[str, Callable[[Mapping[str, str]], ServerSettings]] = {
    "detector": lambda env: DetectorSettings.from_env(env).server,
    "embedder": lambda env: EmbedderSettings.from_env(env).server,
    "search": lambda env: SearchSettings.from_env(env).server,
    "gateway": lambda env: GatewaySettings.from_env(env).server,
}

# Called with (component, None) when it starts and (component, seconds) once it is ready.
Progress = Callable[[str, float | None], None]


class StackError(FaceSearchError):
    """A component of the local stack could not be started or stopped."""

    code = "stack"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None  # None when it does not run
    alive: bool
    health: str  # grpc.health.v1 status name, UNREACHABLE, or STOPPED; kafka: SERVING if it listens
    address: str  # where clients reach it: gRPC HOST:PORT, or the Kafka bootstrap
    grpc_port: int | None
    metrics_port: int | None
    log: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Stack:
    """The stack of one data folder. ``env`` (default: ``os.environ``) is what the services
    inherit, so their ports are set the usual way, with FACESEARCH_<SERVICE>_GRPC_PORT etc."""

    stop_grace_s = STOP_GRACE_S

    def __init__(
        self,
        home: Path,
        *,
        qdrant_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        kafka_port: int | None = None,
        controller_port: int | None = None,
        python: str = sys.executable,
        package: str = "facesearch_services",
        qdrant_server: bool = False,
        search_replicas: int = 1,
    ) -> None:
        self.home = home.expanduser().resolve()
        self.root = self.home / "stack"
        self.kafka_dir = self.root / KAFKA
        self.qdrant_dir = self.root / "qdrant-server"
        self.logs_dir = self.root / "logs"
        self.qdrant_path = (qdrant_path or self.home / "qdrant").expanduser().resolve()
        self.env = dict(os.environ if env is None else env)
        self.kafka_port = kafka_port or _env_port(self.env, KAFKA_PORT_ENV) or DEFAULT_KAFKA_PORT
        self.controller_port = controller_port or _env_port(self.env, CONTROLLER_PORT_ENV)
        self.python = python
        self.package = package
        self.use_qdrant_server = qdrant_server
        self.search_replicas = search_replicas
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._broker: Broker | None = None
        self._qdrant: QdrantServer | None = None

    # -- layout and processes

    def pid_path(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def instances(self) -> list[str]:
        """The service processes, in start order: the search service, its replicas (asked for,
        or running), the embedder, the detector and the gateway."""
        running = [int(p.stem.partition("-")[2]) for p in self.root.glob("search-*.pid")]
        replicas = max([self.search_replicas, *(n for n in running if n > 1)])
        return ["search", *(f"search-{n}" for n in range(2, replicas + 1)), *SERVICES[1:]]

    def command(self, name: str) -> list[str]:
        return [self.python, "-m", f"{self.package}.{kind_of(name)}"]

    def is_ours(self, name: str, pid: int) -> bool:
        """Whether ``pid`` runs that service (a pid in a stale pid file may have been reused)."""
        args = process_args(pid)
        module = f"{self.package}.{kind_of(name)}"
        return args is not None and any(
            a == "-m" and b == module for a, b in itertools.pairwise(args)
        )

    def service_pid(self, name: str) -> int | None:
        """The pid of the service started from this data folder, if it still runs."""
        try:
            pid = int(self.pid_path(name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        child = self._children.get(name)
        if child is not None and child.pid == pid:
            # Started by this object: trust the handle (for a moment after Popen returns the
            # child may not have exec'd yet, so its cmdline is not the service's).
            return pid if child.poll() is None else None
        return pid if self.is_ours(name, pid) else None

    def broker(self) -> Broker:
        """The broker of this data folder: the one that runs, else the one ``up`` would start."""
        if self._broker is not None:
            return self._broker
        configured = Broker.from_data_dir(self.kafka_dir)
        if configured.running_pid() is not None:
            return configured
        controller = self.controller_port or _next_free_port(self.kafka_port + 1)
        return Broker(self.kafka_dir, self.kafka_port, controller)

    def qdrant_server(self) -> QdrantServer | None:
        """The Qdrant server of this data folder: the one started last (running or not), else
        None."""
        return self._qdrant or QdrantServer.from_data_dir(self.qdrant_dir)

    # -- the services' environment

    def compose_env(self, bootstrap: str) -> dict[str, str]:
        """What every service is started with: ``env`` plus the stack's wiring. Running
        services keep the ports they were started with; the others take them from ``env``."""
        env = dict(self.env)
        env.update(
            FACESEARCH_KAFKA_BOOTSTRAP=bootstrap,
            FACESEARCH_HOME=str(self.home),
            QDRANT_PATH=str(self.qdrant_path),
            PYTHONUNBUFFERED="1",  # log lines reach the log file as they are written
        )
        server = self.qdrant_server()
        if server is not None and (self.use_qdrant_server or server.running_pid() is not None):
            env["QDRANT_URL"] = server.url
        if env.get("FACESEARCH_GATEWAY_AUTH", "").strip().lower() != "off":
            env.setdefault("FACESEARCH_GATEWAY_KEYS_FILE", str(keys_path(self.home)))
        for name in SERVICES:
            env[f"FACESEARCH_{name.upper()}_HOST"] = LOOPBACK
        for name in ("detector", "embedder"):
            env[f"FACESEARCH_GATEWAY_{name.upper()}"] = self.server(name, env).grpc_address
        searches = [n for n in self.instances() if kind_of(n) == "search"]
        # Several: the gateway's channel spreads queries over them (round robin).
        addresses = (self.server(n, env).grpc_address for n in searches)
        env["FACESEARCH_GATEWAY_SEARCH"] = ",".join(addresses)
        return env

    def instance_env(self, name: str, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` as service process ``name`` gets it: a replica listens on its own ports."""
        own = dict(env)
        replica = int(name.partition("-")[2] or 1)
        if replica > 1:
            first = _SERVER_OF[kind_of(name)](env)
            step = REPLICA_PORT_STEP * (replica - 1)
            prefix = f"FACESEARCH_{kind_of(name).upper()}_"
            own[prefix + "GRPC_PORT"] = str(first.grpc_port + step)
            own[prefix + "METRICS_PORT"] = str(first.metrics_port + step)
        return own

    def server(self, name: str, env: Mapping[str, str]) -> ServerSettings:
        """Where a service listens: as it was started if it runs, else as ``env`` says."""
        pid = self.service_pid(name)
        started = _process_env(pid) if pid is not None else None
        return _SERVER_OF[kind_of(name)](started or self.instance_env(name, env))

    # -- up

    def up(self, timeout_s: float = READY_TIMEOUT_S, progress: Progress | None = None) -> list[str]:
        """Start whatever of the stack does not run, in order, each once the one before is
        ready; return the names started (none when all was up). On a failure, stop what this
        call started and raise ``StackError`` with the end of the failed component's log."""
        report = progress or (lambda name, seconds: None)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StackError(f"cannot create {self.root}: {exc.strerror or exc}") from exc
        started: list[str] = []
        self._check_replicas()
        with file_lock(self.root / ".lock"):
            try:
                bootstrap = self._ensure_kafka(timeout_s, report, started)
                if self.use_qdrant_server:
                    self._ensure_qdrant(timeout_s, report, started)
                env = self.compose_env(bootstrap)
                self._ensure_admin_key(env)
                for name in self.instances():
                    if self.service_pid(name) is None:
                        own = self.instance_env(name, env)
                        self._start_service(name, own, timeout_s, report, started)
            except BaseException:
                self._stop(list(reversed(started)))
                raise
        return started

    def admin_key(self) -> str | None:
        """The admin key ``up`` made for the gateway (None with keys off)."""
        held = read_stack_key(self.home)
        return held.key if held is not None else None

    def _ensure_admin_key(self, env: Mapping[str, str]) -> None:
        """An admin key for the gateway's owner (devstack.keys), unless keys are off."""
        keys_file = GatewaySettings.from_env(env).keys_file
        if keys_file is not None:
            ensure_admin_key(self.home, keys_file, self.server("gateway", env).grpc_address)

    def _ensure_kafka(self, timeout_s: float, report: Progress, started: list[str]) -> str:
        """The broker running, and the topics ``devstack.topics`` configures (the others are
        auto-created with the broker's defaults)."""
        broker = self.broker()
        if broker.running_pid() is None:
            self._broker = broker
            self._launch(KAFKA, broker, timeout_s, report, started)
        ensure_topics(broker.bootstrap, stack_topics(self.env))
        return broker.bootstrap

    def _check_replicas(self) -> None:
        if self.search_replicas < 1:
            raise ConfigError(f"search replicas must be at least 1, not {self.search_replicas}")
        shared = self.use_qdrant_server or self.env.get("QDRANT_URL", "").strip()
        if self.search_replicas > 1 and not shared:
            raise ConfigError(
                "several search replicas need a Qdrant server they share (--qdrant-server, or "
                "QDRANT_URL): the embedded index is one process's"
            )

    def _ensure_qdrant(self, timeout_s: float, report: Progress, started: list[str]) -> None:
        server = self.qdrant_server()
        if server is not None and server.running_pid() is not None:
            return
        binary = require_binary(self.env)
        http = _next_free_port(6333)
        server = QdrantServer(binary, self.qdrant_dir, http, _next_free_port(http + 1))
        self._qdrant = server
        self._launch(QDRANT, server, timeout_s, report, started)

    def _launch(
        self,
        name: str,
        server: Broker | QdrantServer,
        timeout_s: float,
        report: Progress,
        started: list[str],
    ) -> None:
        """Start the broker or the Qdrant server, its log linked among the services'."""
        report(name, None)
        begun = time.monotonic()
        self._link_log(name, server.log_path)
        started.append(name)
        server.start()
        server.wait_ready(timeout_s)
        report(name, time.monotonic() - begun)

    def _start_service(
        self, name: str, env: dict[str, str], timeout_s: float, report: Progress, started: list[str]
    ) -> None:
        server = _SERVER_OF[kind_of(name)](env)
        _check_ports_free(name, server)
        report(name, None)
        begun = time.monotonic()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(name)
        if log_path.is_file():
            log_path.replace(log_path.with_name(log_path.name + ".1"))
        with log_path.open("wb") as output:
            child = subprocess.Popen(
                self.command(name),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                start_new_session=True,  # Ctrl-C in the terminal that ran `up` leaves it running
            )
        self._children[name] = child
        self.pid_path(name).write_text(f"{child.pid}\n")
        started.append(name)
        log.info("started %s pid %d (gRPC %s)", name, child.pid, server.grpc_address)
        self._wait_serving(name, child, server, timeout_s)
        report(name, time.monotonic() - begun)

    def _wait_serving(
        self, name: str, child: subprocess.Popen[bytes], server: ServerSettings, timeout_s: float
    ) -> None:
        deadline = time.monotonic() + timeout_s
        target = f"{LOOPBACK}:{server.grpc_port}"
        while True:
            if child.poll() is not None:
                raise self._failure(name, f"exited with status {child.returncode} while starting")
            status = check(target, timeout_s=1.0, tls=probe_tls(server, self.env))
            if status == SERVING:
                return
            if time.monotonic() > deadline:
                raise self._failure(name, f"was not SERVING within {timeout_s:.0f} s ({status})")
            time.sleep(POLL_S)

    def _failure(self, name: str, what: str) -> StackError:
        path = self.log_path(name)
        text = path.read_text(errors="replace") if path.is_file() else ""
        tail = "\n".join(line[:300] for line in text.rstrip().splitlines()[-LOG_TAIL_LINES:])
        return StackError(f"{name} {what}; the end of {path}:\n{tail or '(empty)'}")

    def _link_log(self, name: str, target: Path) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        link = self.log_path(name)
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(os.path.relpath(target, self.logs_dir))

    # -- down

    def down(self) -> dict[str, int]:
        """Stop the services (gateway first) and then the broker; return name -> pid of what
        was stopped. A pid file whose process is gone, or is not ours, is only removed."""
        if not self.root.is_dir():
            return {}
        with file_lock(self.root / ".lock"):
            return self._stop([*reversed(self.instances()), QDRANT, KAFKA])

    def _stop(self, names: list[str]) -> dict[str, int]:
        """Stop each of ``names`` in turn; one that resists does not keep the others running:
        the first failure is raised once all were tried."""
        stopped: dict[str, int] = {}
        failures: list[BaseException] = []
        for name in names:
            try:
                self._stop_one(name, stopped)
            except (FaceSearchError, OSError) as exc:
                failures.append(exc)
        if failures:
            raise StackError(f"stopping the stack: {failures[0]}") from failures[0]
        return stopped

    def _stop_one(self, name: str, stopped: dict[str, int]) -> None:
        if name == KAFKA:
            broker = self.broker()
            pid = broker.running_pid()
            if broker.stop() and pid is not None:
                stopped[name] = pid
            self._broker = None
            return
        if name == QDRANT:
            server = self.qdrant_server()
            pid = server.running_pid() if server is not None else None
            if server is not None and server.stop() and pid is not None:
                stopped[name] = pid
            return
        pid = self.service_pid(name)
        if pid is not None:
            self._terminate(name, pid)
            stopped[name] = pid
        self.pid_path(name).unlink(missing_ok=True)
        self._children.pop(name, None)

    def _terminate(self, name: str, pid: int) -> None:
        env = _process_env(pid)
        try:
            drain_s = _SERVER_OF[kind_of(name)](env).drain_s if env else DEFAULT_DRAIN_S
        except ConfigError:
            drain_s = DEFAULT_DRAIN_S
        wait_s = drain_s + self.stop_grace_s
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if wait_gone(pid, wait_s, self._children.get(name)):
            log.info("stopped %s pid %d", name, pid)
            return
        log.warning("%s pid %d did not stop within %.0f s; killing it", name, pid, wait_s)
        with contextlib.suppress(ProcessLookupError):
            # Its own session's group (start_new_session): anything it started goes too.
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        if not wait_gone(pid, 10.0, self._children.get(name)):
            raise StackError(f"{name} (pid {pid}) survived SIGKILL")

    # -- status

    def status(self) -> list[ComponentStatus]:
        """Kafka and each service: pid, health, ports and log (probing only what runs)."""
        broker = self.broker()
        env = self.compose_env(broker.bootstrap)
        server = self.qdrant_server()
        shown = server is not None and (self.use_qdrant_server or server.running_pid() is not None)
        qdrant = [self._qdrant_status(server)] if server is not None and shown else []
        services = [self._service_status(n, env) for n in self.instances()]
        return [self._kafka_status(broker), *qdrant, *services]

    def _qdrant_status(self, server: QdrantServer) -> ComponentStatus:
        pid = server.running_pid()
        health = STOPPED
        if pid is not None:
            health = SERVING if server.answers() else UNREACHABLE
        return ComponentStatus(
            QDRANT, pid, pid is not None, health, server.url, None, None, str(server.log_path)
        )

    def _kafka_status(self, broker: Broker) -> ComponentStatus:
        pid = broker.running_pid()
        health = STOPPED
        if pid is not None:
            health = SERVING if _listens(broker.port) else UNREACHABLE
        return ComponentStatus(
            KAFKA, pid, pid is not None, health, broker.bootstrap, None, None, str(broker.log_path)
        )

    def _service_status(self, name: str, env: Mapping[str, str]) -> ComponentStatus:
        pid = self.service_pid(name)
        server = self.server(name, env)
        address = f"{LOOPBACK}:{server.grpc_port}"
        health = check(address, tls=probe_tls(server, env)) if pid is not None else STOPPED
        return ComponentStatus(
            name,
            pid,
            pid is not None,
            health,
            address,
            server.grpc_port,
            server.metrics_port,
            str(self.log_path(name)),
        )


def probe_tls(server: ServerSettings, env: Mapping[str, str]) -> ClientTls | None:
    """How the stack asks a service with TLS how it is: trusting the service's own certificate
    (asked at 127.0.0.1, which the certificate must name), and presenting the gateway's client
    certificate (FACESEARCH_INTERNAL_TLS_CERT and _KEY) if the service requires one."""
    if server.tls is None:
        return None
    internal = read_client_tls(EnvReader(env), INTERNAL_TLS) if server.tls.client_ca else None
    if internal is None:
        return ClientTls(server.tls.cert)
    return ClientTls(server.tls.cert, internal.cert, internal.key)


def kind_of(name: str) -> str:
    """The service a process name runs: "search-2" is a search service."""
    return name.partition("-")[0]


def _env_port(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name}={raw!r} is not a port (1-65535)")
    return int(raw)


def _process_env(pid: int) -> dict[str, str] | None:
    """The environment a process was started with (None if it cannot be read)."""
    try:
        raw = (Path("/proc") / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Lets a port in TIME_WAIT count as free; a listener still makes bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _next_free_port(port: int) -> int:
    for candidate in range(port, min(port + 100, 65536)):
        if _port_free(candidate):
            return candidate
    return free_port()


def _listens(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0):
            return True
    except OSError:
        return False


def _check_ports_free(name: str, server: ServerSettings) -> None:
    # gRPC binds with SO_REUSEPORT: a second server on a taken port would start, and the health
    # probe could be answered by the other one. Refuse before starting instead.
    prefix = f"FACESEARCH_{name.upper()}_"
    for port, what in ((server.grpc_port, "GRPC_PORT"), (server.metrics_port, "METRICS_PORT")):
        if not _port_free(port):
            raise StackError(
                f"{name} cannot start: port {port} is in use (another stack, or a stack of "
                f"another data folder?); stop that, or choose another with {prefix}{what}"
            )
