"""A real Apache Kafka broker for tests and the local stack: one KRaft node (broker and
controller in one JVM) on 127.0.0.1, its jars fetched once from Maven Central.

``tools/kafka/pom.xml`` names the jars; ``ensure_jars`` copies them, with Maven, into
``~/.cache/facesearch/kafka/<version>/libs`` (or ``$FACESEARCH_KAFKA_HOME/libs``). ``Broker``
keeps everything else in its data folder: ``server.properties``, ``log4j2.xml``, the broker's
output in ``broker.log``, its pid in ``broker.pid`` and the partitions in ``kraft/``.

    facesearch broker start|stop|status|fetch --help
"""

import base64
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from facesearch.devstack.processes import BackgroundServer, file_lock, terminate
from facesearch.errors import ConfigError, FaceSearchError
from facesearch.settings import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.3.1"
HOST = "127.0.0.1"
POM = Path(__file__).resolve().parents[3] / "tools" / "kafka" / "pom.xml"
MARKER = ".complete"  # written last into libs/; holds the sha256 of the pom it came from
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# Small heap: the broker shares a 2-core development machine with the services and the tests.
JVM_OPTS = ("-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20")
LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by facesearch.devstack.broker: everything to stdout, which goes to broker.log. -->
<Configuration status="warn">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="warn"/>
    <Root level="info"><AppenderRef ref="stdout"/></Root>
  </Loggers>
</Configuration>
"""


# In the broker's log: an error, or the message line of an exception (not its stack frames).
_ERROR_LINE = re.compile(r"\] (ERROR|FATAL) |^Caused by: |^[\w.$]+(Exception|Error): ")
_BIND_FAILED = re.compile(r"failed to bind to ([\w.:-]+?):? Address already in use")


class BrokerError(FaceSearchError):
    """The Kafka broker could not be fetched, started, reached or stopped."""

    code = "broker"


def kafka_home() -> Path:
    """``$FACESEARCH_KAFKA_HOME``, else ``~/.cache/facesearch/kafka/<version>``."""
    env = os.environ.get("FACESEARCH_KAFKA_HOME", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "facesearch" / "kafka" / KAFKA_VERSION


def jars_dir() -> Path:
    """The folder that holds (or will hold) the broker's jars."""
    return kafka_home() / "libs"


def jars_ready() -> bool:
    """Whether a complete fetch of the jars is in ``jars_dir()``."""
    return _fetched(jars_dir())


def ensure_jars() -> Path:
    """Fetch the jars with Maven unless a complete fetch of the current pom is already there;
    return their folder. Safe to call from several processes at once."""
    libs = jars_dir()
    if _fetched(libs):
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(libs.parent / ".fetch.lock"):
        if not _fetched(libs):  # another process may have fetched while we waited
            _fetch(libs)
    return libs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest() if POM.is_file() else ""


def _fetched(libs: Path) -> bool:
    marker = libs / MARKER
    if not marker.is_file():
        return False
    digest = _pom_digest()  # without the pom (an installed package), any complete fetch does
    return not digest or marker.read_text().strip() == digest


def _fetch(libs: Path) -> None:
    if not POM.is_file():
        raise ConfigError(
            f"{POM} is missing: fetch the Kafka jars from a source checkout of facesearch, or "
            f"set FACESEARCH_KAFKA_HOME to a folder whose libs/ holds them"
        )
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigError(
            "mvn not found: run scripts/setup, or install Maven (apt-get install maven)"
        )
    partial = libs.with_name(libs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    digest = _pom_digest()
    log.info("fetching Kafka %s jars from Maven Central into %s", KAFKA_VERSION, libs)
    command = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"]
    done = subprocess.run(
        [*command, f"-Dkafka.libs={partial}"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or not (partial / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        raise BrokerError(
            f"fetching the Kafka jars with Maven failed (status {done.returncode}); check the "
            f"network access to Maven Central, then run: facesearch broker fetch\n"
            + _tail(done.stdout + done.stderr)
        )
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    (libs / MARKER).write_text(digest + "\n")  # last: an interrupted fetch is redone


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME", "").strip()
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise ConfigError(
            "java not found: install a Java 17+ runtime (scripts/setup does: apt-get install "
            "default-jre-headless), or set JAVA_HOME"
        )
    return java


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(line[:300] for line in text.rstrip().splitlines()[-lines:])


def _log_excerpt(text: str, lines: int = 10) -> str:
    """The broker log's error lines without their stack frames (its last lines if none)."""
    errors = dict.fromkeys(line[:300] for line in text.splitlines() if _ERROR_LINE.search(line))
    return "\n".join(list(errors)[-lines:]) if errors else _tail(text, lines)


def _read_properties(path: Path) -> dict[str, str]:
    result = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith(("#", "!")):
            result[key.strip()] = value.strip()
    return result


def _random_cluster_id() -> str:
    """What ``StorageTool random-uuid`` prints (Kafka's ``Uuid.randomUuid``: 16 random bytes,
    URL-safe base64 without padding, never starting with "-"), without starting a JVM."""
    while True:
        text = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class Broker(BackgroundServer):
    """One Kafka node (broker and controller) on 127.0.0.1, kept in ``data_dir``.

    ``with Broker(path, port=free_port(), controller_port=free_port()) as broker:`` starts it,
    waits until it answers and stops it at the end; ``broker.bootstrap`` is its address.
    """

    def __init__(self, data_dir: Path, port: int = 9092, controller_port: int = 9093) -> None:
        if port == controller_port:
            raise ConfigError(f"the broker and controller ports must differ (both are {port})")
        if not all(0 < p < 65536 for p in (port, controller_port)):
            raise ConfigError(f"ports must be 1-65535 (got {port} and {controller_port})")
        self.data_dir = data_dir.expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.config_path = self.data_dir / "server.properties"
        self.log_path = self.data_dir / "broker.log"  # the JVM's stdout and stderr
        self.pid_path = self.data_dir / "broker.pid"
        self.log_dirs = self.data_dir / "kraft"  # Kafka's "log" is the partitions' data
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> "Broker":
        """The broker last configured in ``data_dir`` (its ports), or one with default ports."""
        config = data_dir.expanduser().resolve() / "server.properties"
        if not config.is_file():
            return cls(data_dir)
        ports = [
            int(url.rpartition(":")[2]) for url in _read_properties(config)["listeners"].split(",")
        ]
        return cls(data_dir, port=ports[0], controller_port=ports[1])

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def server_properties(self) -> dict[str, str]:
        listeners = f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}"
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            # A static voter (not a formatted --standalone quorum), so the ports may change
            # between starts of the same data folder.
            "controller.quorum.voters": f"1@{HOST}:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": listeners,
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            # The internal topics' defaults assume three brokers.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",  # groups start at once, not after 3 s
            "num.network.threads": "2",
            "num.io.threads": "4",
            # Images travel inline in the events, up to the core's 50 MiB limit (the services'
            # producers and consumers allow as much: settings.MAX_MESSAGE_BYTES).
            "message.max.bytes": str(MAX_MESSAGE_BYTES),
            "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
        }

    def write_config(self) -> None:
        """Write ``server.properties`` and ``log4j2.xml`` into the data folder."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        self.config_path.write_text(
            "# Written by facesearch.devstack.broker\n" + "\n".join(lines) + "\n"
        )
        (self.data_dir / "log4j2.xml").write_text(LOG4J2_XML)

    def start(self) -> None:
        """Launch the broker in the background (formatting its storage the first time); it is
        usable once ``wait_ready`` returns."""
        pid = self.running_pid()
        if pid is not None:
            raise BrokerError(
                f"a broker already runs from {self.data_dir} (pid {pid}); stop it first: "
                f"facesearch broker stop --data-dir {self.data_dir}"
            )
        libs = ensure_jars()
        self.write_config()
        self._format(libs)
        self._launch(libs)

    def _java_command(self, libs: Path, main: str, heap: tuple[str, ...] = ()) -> list[str]:
        log4j = f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.xml'}"
        logs = f"-Dkafka.logs.dir={self.data_dir}"
        return [_java(), *(heap or JVM_OPTS), log4j, logs, "-cp", f"{libs}/*", main]

    def _format(self, libs: Path) -> None:
        if (self.log_dirs / "meta.properties").is_file():
            return
        command = self._java_command(libs, "kafka.tools.StorageTool", ("-Xmx256m",))
        cluster_id = _random_cluster_id()
        args = ["format", "-t", cluster_id, "-c", str(self.config_path)]
        done = subprocess.run([*command, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(
                f"formatting the broker's storage in {self.log_dirs} failed "
                f"(status {done.returncode}); remove that folder and start again:\n"
                + _tail(done.stdout + done.stderr)
            )
        log.info("formatted %s for cluster %s", self.log_dirs, cluster_id)

    def _launch(self, libs: Path) -> None:
        if self.log_path.is_file():
            self.log_path.replace(self.log_path.with_name("broker.log.1"))
        with self.log_path.open("wb") as output:
            self._process = subprocess.Popen(
                [*self._java_command(libs, "kafka.Kafka"), str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # Ctrl-C in the terminal that started it does not stop it
            )
        self.pid_path.write_text(f"{self._process.pid}\n")
        log.info("started Kafka broker pid %d at %s", self._process.pid, self.bootstrap)

    def cluster_id(self) -> str:
        """The cluster id the storage was formatted with ("" before the first start)."""
        meta = self.log_dirs / "meta.properties"
        return _read_properties(meta).get("cluster.id", "") if meta.is_file() else ""

    def owns(self, args: list[str]) -> bool:
        return "kafka.Kafka" in args and str(self.config_path) in args

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Return once the broker answers a client (metadata with its own cluster id); raise
        ``BrokerError`` quoting its log if it exits first or does not answer in time."""
        deadline = time.monotonic() + timeout
        cluster_id = self.cluster_id()
        while not self._answers(cluster_id):
            if self.running_pid() is None:
                raise self._failure("exited before it was ready")
            if time.monotonic() > deadline:
                raise self._failure(f"did not answer within {timeout:.0f} s")
            time.sleep(0.2)
        log.info("Kafka broker ready at %s", self.bootstrap)

    def _answers(self, cluster_id: str) -> bool:
        # Another broker may hold the port: only an answer with our cluster id counts.
        # kafka-python is imported here, when a broker is probed: at import it loads a hundred
        # protocol schemas and warns about each (a DeprecationWarning of importlib.resources).
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap, bootstrap_timeout_ms=1000, request_timeout_ms=2000
            )
        except (KafkaError, OSError):
            return False
        try:
            cluster: dict[str, Any] = admin.describe_cluster()
            admin.list_topics()
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()
        return bool(cluster.get("brokers")) and cluster.get("cluster_id") == cluster_id

    def _failure(self, what: str) -> BrokerError:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        taken = sorted(set(_BIND_FAILED.findall(text)))
        hint = ""
        if taken:
            hint = (
                f" {' and '.join(taken)} is already in use (a broker left running? stop it, "
                f"or choose other ports)."
            )
        return BrokerError(
            f"the Kafka broker at {self.bootstrap} {what}.{hint} From {self.log_path}:\n"
            + _log_excerpt(text)
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """SIGTERM the broker and wait for it (SIGKILL after ``timeout``); False when none ran."""
        pid = self.running_pid()
        if pid is not None:
            terminate(pid, timeout, self._process, "Kafka broker")
        self._forget()
        return pid is not None

    def _forget(self) -> None:
        if self._process is not None:
            self._process.poll()  # reap it
            self._process = None
        self.pid_path.unlink(missing_ok=True)
