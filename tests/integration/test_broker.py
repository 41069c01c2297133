"""The real Apache Kafka broker of facesearch.devstack.broker (jars fetched by setup): kafka-python
produces and consumes through it, it stops cleanly, a taken port fails fast with the reason from
its log, and ``facesearch broker`` starts, reports and stops one."""

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_checks import FACESEARCH
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from facesearch.devstack.broker import Broker, BrokerError, free_port, jars_ready

POLL_DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def jars() -> None:
    """Fail (with how to fix it) where Java or the fetched jars are missing: scripts/setup,
    part of the test command, provides both, and the tests never download them mid-run."""
    if shutil.which("java") is None:
        pytest.fail("java is not installed: run scripts/setup")
    if not jars_ready():
        pytest.fail("the Kafka jars are not fetched: run scripts/setup")


@pytest.fixture(scope="module")
def broker(jars: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for the module, on free ports in a temporary folder."""
    data_dir = tmp_path_factory.mktemp("kafka")
    with Broker(data_dir, port=free_port(), controller_port=free_port()) as running:
        yield running


def new_topic(broker: Broker) -> str:
    """A topic of one partition (so one order), with a name no other test uses."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    return name


def produce(broker: Broker, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        for value in values:
            producer.send(topic, value)
        producer.flush(timeout=POLL_DEADLINE_S)
    finally:
        producer.close()


def consume(consumer: KafkaConsumer, count: int) -> list[bytes]:
    """Poll until ``count`` messages came (or the deadline passed), then commit them."""
    values: list[bytes] = []
    deadline = time.monotonic() + POLL_DEADLINE_S
    while len(values) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500, max_records=count - len(values)).values():
            values.extend(record.value for record in records)
    consumer.commit()
    return values


def group_consumer(broker: Broker, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


def process_runs(pid: int) -> bool:
    """Whether a process runs; a zombie (ended, not yet reaped by its parent) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_messages_come_back_in_order_through_a_consumer_group(broker: Broker) -> None:
    topic = new_topic(broker)
    sent = [f"message {i}".encode() for i in range(100)]
    produce(broker, topic, sent)
    consumer = group_consumer(broker, topic, f"group-{topic}")
    try:
        assert consume(consumer, 100) == sent
        assert consumer.committed(TopicPartition(topic, 0)) == 100
    finally:
        consumer.close()


def test_a_new_consumer_starts_after_the_committed_offset(broker: Broker) -> None:
    topic = new_topic(broker)
    sent = [f"message {i}".encode() for i in range(20)]
    produce(broker, topic, sent)
    group = f"group-{topic}"
    first = group_consumer(broker, topic, group)
    try:
        assert consume(first, 12) == sent[:12]
    finally:
        first.close()
    second = group_consumer(broker, topic, group)
    try:
        assert consume(second, 8) == sent[12:]
        assert second.poll(timeout_ms=500) == {}
    finally:
        second.close()


def test_stop_leaves_no_java_process(jars: None, tmp_path: Path) -> None:
    broker = Broker(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    with broker:
        pid = broker.running_pid()
        assert pid is not None
        assert broker.pid_path.read_text().strip() == str(pid)
    assert not Path(f"/proc/{pid}").exists()  # our child: ended and reaped
    assert not broker.pid_path.exists()
    assert broker.running_pid() is None
    assert broker.stop() is False  # stopping a stopped broker is a no-op


def test_a_taken_port_fails_quickly_quoting_the_log(broker: Broker, tmp_path: Path) -> None:
    second = Broker(tmp_path / "kafka", port=broker.port, controller_port=free_port())
    second.start()
    started = time.monotonic()
    try:
        with pytest.raises(BrokerError) as caught:
            second.wait_ready(timeout=45)
    finally:
        second.stop()
    message = str(caught.value)
    assert f"127.0.0.1:{broker.port} is already in use" in message
    assert "Socket server failed to bind" in message  # quoted from the log
    assert str(second.log_path) in message
    assert time.monotonic() - started < 30
    assert second.running_pid() is None
    assert broker.running_pid() is not None  # the first one is unharmed


def broker_cli(*args: str | Path | int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FACESEARCH), "broker", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_cli_start_status_stop(jars: None, tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    port, controller_port = free_port(), free_port()
    started = broker_cli(
        "start", "--data-dir", data_dir, "--port", port, "--controller-port", controller_port
    )
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout == f"127.0.0.1:{port}\n"
        pid = int((data_dir / "broker.pid").read_text())
        status = broker_cli("status", "--data-dir", data_dir)
        assert status.returncode == 0, status.stderr
        assert f"running (pid {pid}) at 127.0.0.1:{port}" in status.stdout
    finally:
        stopped = broker_cli("stop", "--data-dir", data_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped the broker (pid {pid})" in stopped.stdout
    assert not process_runs(pid)  # not our child: init reaps it when it gets to it
    status = broker_cli("status", "--data-dir", data_dir)
    assert (status.returncode, status.stdout.split(" (")[0]) == (3, "not running")
