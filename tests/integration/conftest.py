"""Fixtures of the integration tier: the real ONNX models (loaded once), Qdrant in local mode in
a temporary folder, the ``facesearch`` console script run as a subprocess, the photos that
the installed packages ship, a real Kafka broker, services as processes, and the local stack.

Test modules do not import from here (two conftest.py files share one module name); everything
they need comes as a fixture."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from cli_checks import FACESEARCH
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from PIL import Image

from facesearch.access import KeyFile
from facesearch.cli.main import demo_photos
from facesearch.devstack.broker import Broker, free_port, jars_ready
from facesearch.devstack.qdrant import SHARED_BINARY, QdrantServer, find_binary
from facesearch.devstack.stack import SERVICES, probe_tls
from facesearch.errors import ConfigError
from facesearch.metrics import scrape
from facesearch.models import FaceModels
from facesearch.pipeline import AnalyzedImage, analyze, embed
from facesearch.proto.v1 import api_pb2_grpc
from facesearch.rpc.client import with_api_key
from facesearch.rpc.settings import SERVICES as SETTINGS
from facesearch.settings import CoreSettings

CLI_TIMEOUT_S = 180
STACK_UP_TIMEOUT_S = 600  # the broker, then four services loading their models, on two cores


@pytest.fixture(scope="session")
def settings() -> CoreSettings:
    """Default settings, as the CLI has them with no FACESEARCH_* variable set."""
    return CoreSettings()


@pytest.fixture(scope="session")
def face_models(settings: CoreSettings) -> FaceModels:
    """The bundled buffalo_s detector and recognizer, loaded once for the whole session."""
    return FaceModels(settings.models)


@pytest.fixture(scope="session")
def demo() -> dict[str, Path]:
    """The sample photos of the installed packages: players, gdp, t1 (the gallery the demo
    indexes) and yaoming (its query)."""
    gallery, query = demo_photos()
    photos = {path.stem: path for path in (*gallery, query)}
    assert sorted(photos) == ["gdp", "players", "t1", "yaoming"]
    for path in photos.values():
        assert path.is_file(), f"{path} is missing from the installed packages"
    return photos


@pytest.fixture(scope="session")
def analyzed(
    demo: dict[str, Path], face_models: FaceModels, settings: CoreSettings
) -> dict[str, tuple[AnalyzedImage, np.ndarray]]:
    """Each demo photo through decode, detect, align and embed (done once): its faces and
    their embeddings, by photo name."""
    result = {}
    for name, path in demo.items():
        image = analyze(path.read_bytes(), face_models, settings)
        result[name] = (image, embed(face_models, image))
    return result


@pytest.fixture(scope="session")
def qdrant_binary() -> Path:
    """Qdrant's server binary: QDRANT_BIN, else ../shared/bin/qdrant, else qdrant on PATH."""
    binary = find_binary(os.environ)
    if binary is None:
        # No registry serves Qdrant's server: a user's laptop may have none, while CI and the
        # development machines have ../shared/bin/qdrant (issue 12 asks for exactly this skip).
        pytest.skip(f"no Qdrant server binary: set QDRANT_BIN, or put one at {SHARED_BINARY}")
    return binary


@pytest.fixture(scope="session")
def qdrant_server(
    qdrant_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QdrantServer]:
    """A real Qdrant server on free ports, with its storage in a temporary folder, for the
    whole session."""
    binary = qdrant_binary
    folder = tmp_path_factory.mktemp("qdrant-server")
    with QdrantServer(binary, folder, free_port(), free_port()) as server:
        yield server


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB filesystem of this test's own (a tmpfs), unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        # Mounting needs root (CAP_SYS_ADMIN), which this project's machines and CI have. Without
        # it the only disk to fill would be the machine's own, which a test must not do; the
        # retry, pause and resume path stays covered by the unit tests of streaming (Edge's
        # free-space check is then untested: these tests need root).
        pytest.skip(f"a disk-full fault needs a tmpfs, and mount failed: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """This test's FACESEARCH_HOME (the CLI keeps its index in home/qdrant)."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def keys_file(home: Path) -> Path:
    """The keys file of this test's gateway (beside ``home``, which holds only the index)."""
    return home.parent / "keys" / "keys.jsonl"


@pytest.fixture
def admin_key(keys_file: Path) -> str:
    """An admin API key in ``keys_file``."""
    return KeyFile(keys_file).create("test admin", ["admin"], [])[1]


@pytest.fixture
def run_cli(home: Path, admin_key: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the ``facesearch`` console script with ARGS, FACESEARCH_HOME set to ``home``,
    FACESEARCH_API_KEY to ``admin_key`` (for --gateway) and no other FACESEARCH_* or QDRANT_*
    variable; ``stdin`` is bytes fed to standard input."""

    def run(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FACESEARCH_", "QDRANT_"))}
        env["FACESEARCH_HOME"] = str(home)
        env["FACESEARCH_API_KEY"] = admin_key
        done = subprocess.run(
            [str(FACESEARCH), *(str(a) for a in args)],
            input=stdin,
            capture_output=True,
            env=env,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        return subprocess.CompletedProcess(
            done.args,
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
        )

    return run


@pytest.fixture(scope="session")
def grey_jpeg() -> Callable[[Path], Path]:
    """Write a plain grey 200x200 JPEG (a valid image without a face) at a path."""

    def write(path: Path) -> Path:
        buffer = io.BytesIO()
        Image.new("RGB", (200, 200), (128, 128, 128)).save(buffer, format="JPEG")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())
        return path

    return write


class KafkaTool:
    """What the tests do on the real broker besides running workers: make topics, produce,
    read a topic from its start, and look at a group's committed offsets."""

    DEADLINE_S = 30.0

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.bootstrap = broker.bootstrap

    def new_topics(self, *names: str, partitions: int = 3) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
            )
        finally:
            admin.close()

    def produce(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", max_request_size=64 * 1024 * 1024
        )
        try:
            for key, value in messages:
                producer.send(topic, value=value, key=key)
            producer.flush(timeout=self.DEADLINE_S)
        finally:
            producer.close()

    def read(
        self, topic: str, count: int, timeout: float = DEADLINE_S, drain: bool = True
    ) -> list[Any]:
        """Every record of ``topic`` from the start, once at least ``count`` came and (with
        ``drain``) all present at that moment were read, or the deadline passed. Without
        ``drain`` for a topic still being written to, whose end keeps moving."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=64 * 1024 * 1024,
            enable_incremental_fetch_sessions=False,  # see kafka_consumer_factory
        )
        try:
            found = consumer.partitions_for_topic(topic) or set()
            parts = [TopicPartition(topic, p) for p in sorted(found)]
            consumer.assign(parts)
            consumer.seek_to_beginning()
            records: list[Any] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=100).values():
                    records.extend(batch)
                ends = consumer.end_offsets(parts)
                drained = not drain or all(consumer.position(p) >= ends[p] for p in parts)
                if len(records) >= count and drained:
                    break
            return records
        finally:
            consumer.close()

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offset for each partition of ``topic`` (0 where none)."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group)
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            return {p.partition: consumer.committed(p) or 0 for p in parts}
        finally:
            consumer.close(autocommit=False)

    def end_offsets(self, topic: str) -> dict[int, int]:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            return {p.partition: offset for p, offset in consumer.end_offsets(parts).items()}
        finally:
            consumer.close()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaTool]:
    """One real broker for the session, on free ports. Without Java or the jars the tests
    fail: scripts/setup, part of the test command, provides both."""
    if shutil.which("java") is None or not jars_ready():
        pytest.fail("java or the Kafka jars are missing: run scripts/setup")
    with Broker(
        tmp_path_factory.mktemp("kafka"), port=free_port(), controller_port=free_port()
    ) as broker:
        yield KafkaTool(broker)


class ServiceProcess:
    """One facesearch service as a real process (``python -m facesearch_services.<name>``),
    its output in a log file, on free ports."""

    READY_S = 120.0

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        prefix = f"FACESEARCH_{name.upper()}_"
        self.env = {
            **env,
            prefix + "HOST": "127.0.0.1",
            prefix + "GRPC_PORT": str(self.grpc_port),
            prefix + "METRICS_PORT": str(self.metrics_port),
            prefix + "DRAIN_SECONDS": "5",
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> "ServiceProcess":
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"facesearch_services.{self.name}"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_serving(self) -> "ServiceProcess":
        from facesearch.rpc.health import check

        # Over TLS when its environment gives it a certificate, as the local stack asks.
        try:
            tls = probe_tls(SETTINGS[self.name].from_env(self.env).server, self.env)
        except ConfigError:  # the service refuses its settings too, and its exit says why
            tls = None
        deadline = time.monotonic() + self.READY_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited {self.process.returncode}:\n{self.log_text()}")
            if check(self.target, tls=tls) == "SERVING":
                return self
            time.sleep(0.2)
        pytest.fail(f"{self.name} not SERVING after {self.READY_S} s:\n{self.log_text()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, and the exit status (the process is killed if it outlives ``timeout``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"{self.name} outlived SIGTERM by {timeout} s:\n{self.log_text()}")
        return self.process.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture
def service_env(kafka: KafkaTool, home: Path, keys_file: Path, admin_key: str) -> dict[str, str]:
    """The environment of this test's services: the session's broker, this test's own topics
    and consumer groups, its own index folder, a folder they may read images by URI from
    (``FACESEARCH_URI_ROOTS``, beside ``home``), and the keys file holding ``admin_key``."""
    base = f"t{uuid.uuid4().hex[:10]}"
    by_reference = home.parent / "by-reference"
    by_reference.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACESEARCH_", "QDRANT_"))}
    env.update(
        {
            "FACESEARCH_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "FACESEARCH_HOME": str(home),
            "FACESEARCH_TOPIC_IMAGES": f"{base}.images",
            "FACESEARCH_TOPIC_FACES": f"{base}.faces",
            "FACESEARCH_TOPIC_EMBEDDINGS": f"{base}.embeddings",
            "FACESEARCH_URI_ROOTS": str(by_reference),
            "FACESEARCH_GATEWAY_KEYS_FILE": str(keys_file),
        }
    )
    for name in ("detector", "embedder", "search"):
        env[f"FACESEARCH_{name.upper()}_GROUP"] = f"{base}-{name}"
    topics = [env[f"FACESEARCH_TOPIC_{t}"] for t in ("IMAGES", "FACES", "EMBEDDINGS")]
    kafka.new_topics(*topics, *(t + ".dlq" for t in topics))
    return env


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start a service with an environment and wait until it is SERVING (unless told not
    to wait); every service started is stopped at the end of the test."""
    started: list[ServiceProcess] = []

    def start(name: str, env: dict[str, str], wait: bool = True) -> ServiceProcess:
        service = ServiceProcess(name, env, tmp_path / f"{name}-{len(started)}.log")
        started.append(service.start())
        return service.wait_serving() if wait else service

    yield start
    for service in reversed(started):
        if service.process is not None and service.process.poll() is None:
            service.process.kill()
            service.process.wait()


@pytest.fixture(scope="session")
def metric() -> Callable[..., float]:
    """``metric(port, name, **labels)``: one sample of a service's Prometheus metrics."""
    return scrape


def run_facesearch(
    env: dict[str, str], *args: str | Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FACESEARCH), *(str(a) for a in args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def run_with_env() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_with_env(env, *args, timeout=120)``: the ``facesearch`` console script with
    exactly the environment ``env``."""
    return run_facesearch


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a local stack (``facesearch stack``): no FACESEARCH_* or QDRANT_*
    from outside; every port free; the data folder in tmp."""
    if shutil.which("java") is None or not jars_ready():
        pytest.fail("java or the Kafka jars are missing: run scripts/setup")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACESEARCH_", "QDRANT_"))}
    env["FACESEARCH_HOME"] = str(tmp_path / "home")
    env["FACESEARCH_STACK_KAFKA_PORT"] = str(free_port())
    env["FACESEARCH_STACK_KAFKA_CONTROLLER_PORT"] = str(free_port())
    for name in SERVICES:
        env[f"FACESEARCH_{name.upper()}_GRPC_PORT"] = str(free_port())
        env[f"FACESEARCH_{name.upper()}_METRICS_PORT"] = str(free_port())
    return env


@pytest.fixture
def local_stack(stack_env: dict[str, str]) -> Iterator[dict[str, dict[str, Any]]]:
    """``facesearch stack up`` with ``stack_env``: its components (kafka and the services) by
    name, as ``stack up --json`` reports them; ``stack down`` at the end of the test."""
    done = run_facesearch(stack_env, "stack", "up", "--json", timeout=STACK_UP_TIMEOUT_S)
    try:
        assert done.returncode == 0, done.stderr
        yield {c["name"]: c for c in json.loads(done.stdout)["components"]}
    finally:
        down = run_facesearch(stack_env, "stack", "down", timeout=300)
        assert down.returncode == 0, down.stderr


@pytest.fixture
def gateway_target(service_env: dict[str, str], start_service: Callable[..., Any]) -> str:
    """HOST:PORT of a gateway in front of this test's detector, embedder and search."""
    internal = {
        name: start_service(name, service_env) for name in ("search", "embedder", "detector")
    }
    env = {
        **service_env,
        **{f"FACESEARCH_GATEWAY_{n.upper()}": s.target for n, s in internal.items()},
    }
    return str(start_service("gateway", env).target)


@pytest.fixture
def gateway_channel(gateway_target: str, admin_key: str) -> Iterator[grpc.Channel]:
    """A channel to the gateway whose calls carry ``admin_key``."""
    with grpc.insecure_channel(gateway_target) as channel:
        yield with_api_key(channel, admin_key)


@pytest.fixture
def gateway(gateway_channel: grpc.Channel) -> api_pb2_grpc.FaceSearchStub:
    return api_pb2_grpc.FaceSearchStub(gateway_channel)
