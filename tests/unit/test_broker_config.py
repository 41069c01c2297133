"""What facesearch.devstack.broker writes and how it finds its jars, without Java or the
network: the server.properties of a one-node KRaft broker, and ensure_jars against a stand-in
``mvn``."""

import os
import re
import stat
from pathlib import Path

import pytest

from facesearch.devstack import broker as broker_module
from facesearch.devstack.broker import KAFKA_VERSION, Broker, BrokerError, ensure_jars, jars_dir
from facesearch.errors import ConfigError


def read_properties(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_server_properties_for_one_node_on_loopback(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "kafka", port=19092, controller_port=19093)
    broker.write_config()
    props = read_properties(tmp_path / "kafka" / "server.properties")
    listeners = "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["listeners"] == listeners
    assert props["advertised.listeners"] == listeners
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert broker.bootstrap == "127.0.0.1:19092"
    assert (tmp_path / "kafka" / "log4j2.xml").read_text().startswith("<?xml")


def test_internal_topics_need_one_replica(tmp_path: Path) -> None:
    props = Broker(tmp_path).server_properties()
    ones = [
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ]
    assert {name: props[name] for name in ones} == dict.fromkeys(ones, "1")


def test_log_dirs_is_absolute_even_for_a_relative_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    broker = Broker(Path("relative") / "kafka")
    log_dirs = Path(broker.server_properties()["log.dirs"])
    assert log_dirs.is_absolute()
    assert log_dirs.parent == tmp_path.resolve() / "relative" / "kafka"
    assert broker.data_dir.is_absolute()


def test_default_ports_and_ports_read_back_from_the_data_dir(tmp_path: Path) -> None:
    default = Broker(tmp_path)
    assert (default.port, default.controller_port) == (9092, 9093)
    assert Broker.from_data_dir(tmp_path / "never-started").port == 9092
    Broker(tmp_path, port=29092, controller_port=29099).write_config()
    found = Broker.from_data_dir(tmp_path)
    assert (found.port, found.controller_port) == (29092, 29099)
    assert found.running_pid() is None


def test_bad_ports_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must differ"):
        Broker(tmp_path, port=9092, controller_port=9092)
    with pytest.raises(ConfigError, match="1-65535"):
        Broker(tmp_path, port=65535, controller_port=65536)


def test_cluster_id_has_kafkas_uuid_form() -> None:
    ids = {broker_module._random_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)


def test_jars_dir_default_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FACESEARCH_KAFKA_HOME", raising=False)
    expected = Path.home() / ".cache" / "facesearch" / "kafka" / KAFKA_VERSION / "libs"
    assert jars_dir() == expected
    monkeypatch.setenv("FACESEARCH_KAFKA_HOME", str(tmp_path))
    assert jars_dir() == tmp_path / "libs"


# A stand-in for Maven: counts its runs, then copies "the jars" or fails as told.
FAKE_MVN = """#!/bin/sh
echo run >> "$FAKE_MVN_RUNS"
[ -n "$FAKE_MVN_FAIL" ] && { echo "[ERROR] Could not resolve dependencies"; exit 1; }
for arg in "$@"; do
  case "$arg" in -Dkafka.libs=*) libs="${arg#-Dkafka.libs=}";; esac
done
mkdir -p "$libs" && touch "$libs/kafka_2.13-VERSION.jar" "$libs/log4j-slf4j-impl-2.25.4.jar"
"""


@pytest.fixture
def fake_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``mvn`` first on PATH and an empty FACESEARCH_KAFKA_HOME; returns the file in
    which the fake records each run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text(FAKE_MVN.replace("VERSION", KAFKA_VERSION))
    mvn.chmod(mvn.stat().st_mode | stat.S_IXUSR)
    runs = tmp_path / "runs"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MVN_RUNS", str(runs))
    monkeypatch.setenv("FACESEARCH_KAFKA_HOME", str(tmp_path / "kafka-home"))
    return runs


def runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_jars_are_fetched_once(fake_mvn: Path) -> None:
    libs = ensure_jars()
    assert libs == jars_dir()
    assert (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    assert (libs / ".complete").read_text().strip() == broker_module._pom_digest()
    assert ensure_jars() == libs
    assert runs(fake_mvn) == 1


def test_an_interrupted_fetch_is_redone(fake_mvn: Path) -> None:
    libs = ensure_jars()
    (libs / ".complete").unlink()  # as if killed before the marker was written
    (libs / "stale.jar").touch()
    ensure_jars()
    assert runs(fake_mvn) == 2
    assert not (libs / "stale.jar").exists()
    assert (libs / ".complete").is_file()


def test_a_changed_pom_fetches_again(fake_mvn: Path) -> None:
    libs = ensure_jars()
    (libs / ".complete").write_text("sha256 of an older pom\n")
    ensure_jars()
    assert runs(fake_mvn) == 2


def test_a_failed_fetch_says_what_to_do_and_leaves_no_marker(
    fake_mvn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MVN_FAIL", "1")
    with pytest.raises(BrokerError, match="Maven Central") as caught:
        ensure_jars()
    assert "facesearch broker fetch" in str(caught.value)
    assert "Could not resolve dependencies" in str(caught.value)
    assert not (jars_dir() / ".complete").exists()


def test_missing_maven_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACESEARCH_KAFKA_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="install Maven"):
        ensure_jars()
