"""``facesearch.devstack.stack`` without Kafka or the real services: pid files, which pids it
will signal, the status of a stack that is not running, the environment each service gets, and
the start / stop life cycle with stand-in services (small processes that serve grpc.health.v1 on
127.0.0.1, as the real ones do)."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from facesearch.cli.main import cli
from facesearch.devstack.broker import free_port
from facesearch.devstack.stack import KAFKA, SERVICES, STOPPED, Progress, Stack, StackError
from facesearch.rpc.health import UNREACHABLE, check
from facesearch.rpc.health import main as probe_main
from facesearch.rpc.settings import (
    DetectorSettings,
    EmbedderSettings,
    GatewaySettings,
    SearchSettings,
)

STANDIN = '''
"""A stand-in service: NOT_SERVING for a moment, then SERVING until SIGTERM."""
import os, signal, sys, threading, time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

name = __spec__.name.rpartition(".")[2]
if os.environ.get("STANDIN_FAIL") == name:
    print(f"{name}: cannot load the model: boom", file=sys.stderr)
    sys.exit(1)
stop = threading.Event()
if os.environ.get("STANDIN_IGNORE_TERM") == name:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
server = grpc.server(futures.ThreadPoolExecutor(2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
port = os.environ[f"FACESEARCH_{name.upper()}_GRPC_PORT"]
server.add_insecure_port(os.environ[f"FACESEARCH_{name.upper()}_HOST"] + ":" + port)
servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
server.start()
print(f"{name} listening on {port}", flush=True)
time.sleep(0.3)
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
stop.wait()
server.stop(0)
'''


class NoKafkaStack(Stack):
    """The stack with its broker left out: the stand-ins need none."""

    def _ensure_kafka(self, timeout_s: float, report: Progress, started: list[str]) -> str:
        return "127.0.0.1:1"


@pytest.fixture
def standins(tmp_path: Path) -> Path:
    """A package ``standin_services`` with the four stand-ins; returns the folder to put on
    PYTHONPATH."""
    root = tmp_path / "standins"
    package = root / "standin_services"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in SERVICES:
        (package / f"{name}.py").write_text(STANDIN)
    return root


def ports_env() -> dict[str, str]:
    env = {}
    for name in SERVICES:
        env[f"FACESEARCH_{name.upper()}_GRPC_PORT"] = str(free_port())
        env[f"FACESEARCH_{name.upper()}_METRICS_PORT"] = str(free_port())
        env[f"FACESEARCH_{name.upper()}_DRAIN_SECONDS"] = "1"
    return env


@pytest.fixture
def standin_stack(tmp_path: Path, standins: Path) -> Iterator[NoKafkaStack]:
    env = {**os.environ, **ports_env(), "PYTHONPATH": str(standins)}
    stack = NoKafkaStack(tmp_path / "home", env=env, package="standin_services")
    stack.stop_grace_s = 2.0
    yield stack
    stack.down()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not a facesearch service."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def test_layout(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "home", env={})
    assert stack.root == (tmp_path / "home" / "stack").resolve()
    assert stack.pid_path("detector") == stack.root / "detector.pid"
    assert stack.log_path("search") == stack.root / "logs" / "search.log"
    assert stack.broker().data_dir == stack.root / "kafka"
    assert stack.qdrant_path == stack.home / "qdrant"
    assert stack.command("gateway")[1:] == ["-m", "facesearch_services.gateway"]


def test_kafka_port_comes_from_option_then_env(tmp_path: Path) -> None:
    env = {"FACESEARCH_STACK_KAFKA_PORT": "19092", "FACESEARCH_STACK_KAFKA_CONTROLLER_PORT": "19"}
    assert Stack(tmp_path, env=env).broker().port == 19092
    assert Stack(tmp_path, env=env).broker().controller_port == 19
    assert Stack(tmp_path, env=env, kafka_port=29092).broker().port == 29092
    broker = Stack(tmp_path, env={}).broker()
    assert broker.port == 9092
    assert broker.controller_port > 9092


def test_stack_env_wires_the_services_together(tmp_path: Path) -> None:
    env = {**ports_env(), "FACESEARCH_GATEWAY_DETECTOR": "elsewhere:1", "QDRANT_PATH": "/x"}
    stack = Stack(tmp_path / "home", env=env)
    composed = stack.compose_env("127.0.0.1:19092")
    detector = DetectorSettings.from_env(composed).server
    embedder = EmbedderSettings.from_env(composed).server
    search = SearchSettings.from_env(composed)
    gateway = GatewaySettings.from_env(composed)
    assert detector.grpc_port == int(env["FACESEARCH_DETECTOR_GRPC_PORT"])
    assert gateway.server.grpc_port == int(env["FACESEARCH_GATEWAY_GRPC_PORT"])
    assert gateway.detector == f"127.0.0.1:{detector.grpc_port}" == detector.grpc_address
    assert gateway.embedder == embedder.grpc_address
    assert gateway.search == search.server.grpc_address
    for settings in (detector, embedder, search.server, gateway.server):
        assert settings.host == "127.0.0.1"
    assert search.kafka.bootstrap == gateway.kafka.bootstrap == "127.0.0.1:19092"
    assert search.core.qdrant_path == stack.home / "qdrant"  # the embedded commands' index
    assert search.core.home == stack.home


def test_default_ports_are_the_settings_defaults(tmp_path: Path) -> None:
    composed = Stack(tmp_path, env={}).compose_env("127.0.0.1:9092")
    assert GatewaySettings.from_env(composed).server.grpc_address == "127.0.0.1:50051"
    assert GatewaySettings.from_env(composed).detector == "127.0.0.1:50052"


def test_status_of_a_stack_that_is_not_running(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "home", env=ports_env())
    components = stack.status()
    assert [c.name for c in components] == [KAFKA, *SERVICES]
    for component in components:
        assert (component.pid, component.alive, component.health) == (None, False, STOPPED)
    gateway = components[-1]
    assert gateway.grpc_port == int(stack.env["FACESEARCH_GATEWAY_GRPC_PORT"])
    assert gateway.metrics_port == int(stack.env["FACESEARCH_GATEWAY_METRICS_PORT"])
    assert gateway.log == str(stack.root / "logs" / "gateway.log")
    json.dumps([c.to_json() for c in components])


def test_a_stale_pid_file_counts_as_not_running(tmp_path: Path) -> None:
    stack = Stack(tmp_path, env={})
    stack.root.mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    stack.pid_path("search").write_text(done.stdout)
    assert stack.service_pid("search") is None
    stack.pid_path("search").write_text("not a pid\n")
    assert stack.service_pid("search") is None


def test_down_never_signals_a_pid_that_is_not_the_service(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    stack = Stack(tmp_path, env={})
    stack.root.mkdir(parents=True)
    for name in SERVICES:
        stack.pid_path(name).write_text(f"{sleeper.pid}\n")
    assert stack.service_pid("detector") is None
    assert stack.down() == {}
    assert sleeper.poll() is None  # still running
    assert not any(stack.pid_path(name).exists() for name in SERVICES)


def test_the_pid_must_run_that_very_service(tmp_path: Path, standins: Path) -> None:
    module = "standin_services.detector"
    env = {**os.environ, **ports_env(), "PYTHONPATH": str(standins)}
    stack = Stack(tmp_path, env=env, package="standin_services")
    process = subprocess.Popen([sys.executable, "-m", module], env=env)
    try:
        deadline = time.monotonic() + 10
        # Popen may return before the child has exec'd; until then its cmdline is empty.
        while not Path(f"/proc/{process.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert stack.is_ours("detector", process.pid)
        assert not stack.is_ours("embedder", process.pid)
        assert not Stack(tmp_path, env=env).is_ours("detector", process.pid)  # other package
    finally:
        process.kill()
        process.wait()


def test_up_status_down_with_standins(standin_stack: NoKafkaStack) -> None:
    events: list[tuple[str, float | None]] = []
    started = standin_stack.up(timeout_s=30, progress=lambda n, s: events.append((n, s)))
    assert started == list(SERVICES)
    assert [n for n, s in events if s is None] == list(SERVICES)
    assert all(s is not None and s > 0 for n, s in events[1::2])
    services = standin_stack.status()[1:]
    assert [(c.name, c.alive, c.health) for c in services] == [
        (n, True, "SERVING") for n in SERVICES
    ]
    pids = {c.name: c.pid for c in services}
    for name, pid in pids.items():
        assert standin_stack.pid_path(name).read_text().strip() == str(pid)
        assert f"{name} listening" in standin_stack.log_path(name).read_text()

    assert standin_stack.up(timeout_s=30) == []  # already up: nothing started

    # A new Stack object (as a later `facesearch stack down` builds) finds them by pid file.
    later = NoKafkaStack(standin_stack.home, env=standin_stack.env, package="standin_services")
    assert later.down() == pids
    assert list(later.down()) == []
    assert all(gone(pid) for pid in pids.values() if pid is not None)
    assert not any(later.pid_path(name).exists() for name in SERVICES)


def test_a_service_that_dies_stops_the_others_and_shows_its_log(
    standin_stack: NoKafkaStack,
) -> None:
    standin_stack.env["STANDIN_FAIL"] = "detector"
    with pytest.raises(StackError, match=r"(?s)detector exited.*cannot load the model: boom"):
        standin_stack.up(timeout_s=30)
    assert all(c.pid is None for c in standin_stack.status())
    assert not any(standin_stack.pid_path(name).exists() for name in SERVICES)


def test_a_service_that_ignores_sigterm_is_killed(standin_stack: NoKafkaStack) -> None:
    standin_stack.env["STANDIN_IGNORE_TERM"] = "search"
    standin_stack.up(timeout_s=30)
    pid = standin_stack.service_pid("search")
    begun = time.monotonic()
    assert "search" in standin_stack.down()
    assert 1 + 2 <= time.monotonic() - begun < 30  # drain 1 s + grace 2 s, then SIGKILL
    assert pid is not None and gone(pid)


def test_a_taken_port_is_refused_before_starting(standin_stack: NoKafkaStack) -> None:
    standin_stack.up(timeout_s=30)
    other = NoKafkaStack(
        standin_stack.home.parent / "other", env=standin_stack.env, package="standin_services"
    )
    with pytest.raises(StackError, match="FACESEARCH_SEARCH_GRPC_PORT"):
        other.up(timeout_s=30)


def test_health_probe_without_a_server() -> None:
    assert check(f"127.0.0.1:{free_port()}", timeout_s=1.0) == UNREACHABLE
    with pytest.raises(SystemExit) as exit_info:
        probe_main([f"127.0.0.1:{free_port()}", "--timeout", "1"])
    assert exit_info.value.code == 1


def test_cli_status_and_down_of_a_stack_that_is_not_running(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"FACESEARCH_HOME": str(tmp_path)}
    done = runner.invoke(cli, ["stack", "status", "--json"], env=env)
    assert done.exit_code == 3, done.output
    names = [c["name"] for c in json.loads(done.output)["components"]]
    assert names == [KAFKA, *SERVICES]
    done = runner.invoke(cli, ["stack", "down", "--data-dir", str(tmp_path / "x")], env=env)
    assert done.exit_code == 0, done.output
    assert "nothing" in done.output
