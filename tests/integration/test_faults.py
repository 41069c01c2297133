"""Faults the local stack survives (issue 5, "Faults to survive"), on the real broker: ``kill -9``
of the detector, the embedder and the search service in the middle of a stream of 500 images,
then a restart; the broker stopped and started again mid-stream (the gateway answers
UNAVAILABLE meanwhile, promptly); and a rolling SIGTERM restart of every service under load.
After each, every face of every image is in the index exactly once (as many as the embedded
pipeline finds in that image, and no stray point), every consumer group's lag is zero and
nothing was dead-lettered; after the rolling restart no stage handled a record twice either.

One stack serves the whole module (it takes minutes to start on two cores); each test sends
images of its own, made from the demo photos by changing one pixel, so that their ids differ.
The last test stops the stack and counts the points in its Qdrant folder directly. What each
fault did (recovery times, retries, pauses, refusals) is printed: run with ``-s`` to see it."""

import io
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_checks import gateway_stub
from kafka import KafkaConsumer, TopicPartition
from PIL import Image

from facesearch.devstack.broker import free_port, jars_ready
from facesearch.devstack.stack import KAFKA, SERVICES, Stack
from facesearch.errors import TransientError
from facesearch.ids import image_id
from facesearch.models import FaceModels, recognizer_identity
from facesearch.pipeline import analyze, apply_gate
from facesearch.proto.v1 import api_pb2
from facesearch.rpc.client import GatewayClient, IndexItem
from facesearch.rpc.settings import SERVICES as SETTINGS_OF
from facesearch.settings import CoreSettings
from facesearch.stores import open_store
from facesearch.stream.worker import dlq_topic

STREAM = 500  # images per fault, as the issue asks
UP_S = 600.0  # the broker, then four services loading their models, on two cores
SETTLE_S = 240.0  # for the pipeline to take in a stream after a fault
SUBMIT_S = 240.0  # for the client to have every image of a stream accepted
MID_STREAM_S = 120.0  # for the stage under test to be in the middle of the stream
CHUNK = 20  # images per IndexImages call
DRAIN_S = 10.0  # each service's FACESEARCH_<S>_DRAIN_SECONDS here
GATEWAY_DEADLINE_S = 5.0  # FACESEARCH_GATEWAY_DEADLINE_SECONDS: also the broker's ack wait
# Each base photo, its longest side, and what it holds at that size (kept small for speed).
BASES = (("gdp", 160), ("t1", 240), ("yaoming", 160), ("players", 320))
CONSUMED = "facesearch_messages_consumed_total"
COUNTERS = {
    "retries": "facesearch_handler_retries_total",
    "pauses": "facesearch_partition_pauses_total",
    "dead_lettered": "facesearch_messages_dead_lettered_total",
}


# -- the images and what the embedded pipeline finds in them


def variants(demo: dict[str, Path], first: int, count: int) -> list[bytes]:
    """``count`` distinct small JPEGs: the base photos downscaled, each with one pixel set from
    its number (``first`` on), so no two tests send the same image."""
    bases = []
    for name, side in BASES:
        image = Image.open(demo[name]).convert("RGB")
        image.thumbnail((side, side))
        bases.append(image)
    out = []
    for number in range(first, first + count):
        image = bases[number % len(bases)].copy()
        k = number // len(bases)
        xy = (k % image.width, (k // image.width) % image.height)
        image.putpixel(xy, ((k * 37) % 256, (k * 91) % 256, (k * 53 + 1) % 256))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


@dataclass
class Batch:
    """One test's images, by id, and the faces the embedded pipeline indexes of each."""

    images: dict[str, bytes]
    faces: dict[str, int]


@dataclass
class FaultStack:
    stack: Stack
    env: dict[str, str]
    demo: dict[str, Path]
    models: FaceModels
    settings: CoreSettings
    sent: dict[str, int] = field(default_factory=dict)  # every image sent: id -> its faces
    next_image: int = 0

    def port(self, name: str, kind: str = "metrics") -> int:
        server = SETTINGS_OF[name].from_env(self.stack.compose_env(self.bootstrap)).server
        return server.metrics_port if kind == "metrics" else server.grpc_port

    @property
    def bootstrap(self) -> str:
        return self.stack.broker().bootstrap

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.port('gateway', 'grpc')}"

    def client(self, timeout_s: float = 60.0) -> GatewayClient:
        return GatewayClient(self.gateway, timeout_s, self.stack.admin_key())

    def batch(self, count: int = STREAM) -> Batch:
        """``count`` new images and the embedded pipeline's count of faces of each."""
        data = variants(self.demo, self.next_image, count)
        self.next_image += count
        images = {image_id(d): d for d in data}
        assert len(images) == count, "two variants of a photo came out the same"
        faces = {}
        for key, value in images.items():
            analyzed, _ = apply_gate(
                analyze(value, self.models, self.settings), self.settings.quality
            )
            faces[key] = len(analyzed.faces)
        self.sent.update(faces)
        return Batch(images, faces)

    def pid(self, name: str) -> int:
        pid = self.stack.service_pid(name)
        assert pid is not None, f"{name} does not run:\n{log_tail(self.stack, name)}"
        return pid

    def restart_missing(self) -> float:
        """``stack up``: start what is not running; the seconds it took."""
        begun = time.monotonic()
        self.stack.up(UP_S)
        return time.monotonic() - begun


def log_tail(stack: Stack, name: str, lines: int = 30) -> str:
    path = stack.broker().log_path if name == KAFKA else stack.log_path(name)
    text = path.read_text(errors="replace") if path.is_file() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def faults(
    tmp_path_factory: pytest.TempPathFactory,
    demo: dict[str, Path],
    face_models: FaceModels,
    settings: CoreSettings,
) -> Iterator[FaultStack]:
    """A local stack (``facesearch stack up``, in this process) for the module's tests."""
    if not jars_ready():
        pytest.fail("the Kafka jars are missing: run scripts/setup")
    home = tmp_path_factory.mktemp("faults") / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACESEARCH_", "QDRANT_"))}
    env["FACESEARCH_HOME"] = str(home)
    env["FACESEARCH_GATEWAY_DEADLINE_SECONDS"] = str(GATEWAY_DEADLINE_S)
    for name in SERVICES:
        prefix = f"FACESEARCH_{name.upper()}_"
        env[prefix + "GRPC_PORT"] = str(free_port())
        env[prefix + "METRICS_PORT"] = str(free_port())
        env[prefix + "DRAIN_SECONDS"] = str(DRAIN_S)
    stack = Stack(home, env=env, kafka_port=free_port(), controller_port=free_port())
    try:
        stack.up(UP_S)
        yield FaultStack(stack, env, demo, face_models, settings)
    finally:
        stack.down()


# -- submitting, as a client that retries what was refused for a transient reason


class Submitter(threading.Thread):
    """Sends a batch's images through the gateway, ``CHUNK`` at a time, in the background; a
    call refused as a whole, or an image refused, for a transient reason is sent again."""

    def __init__(self, faults: FaultStack, images: dict[str, bytes], rate: float = 0.0) -> None:
        super().__init__(name="submitter", daemon=True)
        self.faults = faults
        self.images = images
        self.rate = rate  # images per second at most (0: as fast as the gateway takes them)
        self.accepted: set[str] = set()
        self.refusals: list[tuple[float, float, str]] = []  # (when, how long it took, why)
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self._submit()
        except BaseException as exc:  # reported by wait()
            self.failure = exc

    def _submit(self) -> None:
        todo = list(self.images.items())
        deadline = time.monotonic() + SUBMIT_S
        with self.faults.client() as client:
            while todo and time.monotonic() < deadline:
                chunk, todo = todo[:CHUNK], todo[CHUNK:]
                begun = time.monotonic()
                if self.rate:
                    time.sleep(len(chunk) / self.rate)
                try:
                    results = client.index(
                        IndexItem(data, path=f"{key}.jpg") for key, data in chunk
                    )
                except TransientError as exc:
                    self.refusals.append((begun, time.monotonic() - begun, str(exc)))
                    todo = chunk + todo
                    time.sleep(0.5)
                    continue
                for (key, data), result in zip(chunk, results, strict=True):
                    if result == key:
                        self.accepted.add(key)
                    elif isinstance(result, TransientError):
                        self.refusals.append((begun, time.monotonic() - begun, str(result)))
                        todo.append((key, data))
                    else:
                        raise AssertionError(f"{key} refused for good: {result}")

    def wait(self) -> "Submitter":
        self.join(SUBMIT_S + 60)
        assert not self.is_alive(), "the submitter did not finish"
        if self.failure is not None:
            raise self.failure
        missing = set(self.images) - self.accepted
        assert not missing, (
            f"{len(missing)} images never accepted; last refusals {self.refusals[-3:]}"
        )
        return self


# -- the state of the pipeline


def groups(fault: FaultStack) -> list[tuple[str, str, str]]:
    """(service, its consumer group, its input topic), in pipeline order."""
    env = fault.stack.compose_env(fault.bootstrap)
    out = []
    for name in ("detector", "embedder", "search"):
        settings = SETTINGS_OF[name].from_env(env)
        kafka = settings.kafka
        topic = {
            "detector": kafka.images_topic,
            "embedder": kafka.faces_topic,
            "search": kafka.embeddings_topic,
        }[name]
        out.append((name, settings.server.group_id, topic))
    return out


def lags(fault: FaultStack) -> dict[str, dict[int, int]]:
    """Each group's lag per partition of its input topic (end offset - committed), read in
    pipeline order so that a stage's zero means its outputs are already in the next topic."""
    out = {}
    for name, group, topic in groups(fault):
        consumer = KafkaConsumer(bootstrap_servers=fault.bootstrap, group_id=group)
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            ends = consumer.end_offsets(parts)
            out[name] = {p.partition: ends[p] - (consumer.committed(p) or 0) for p in parts}
        finally:
            consumer.close(autocommit=False)
    return out


def end_offsets(fault: FaultStack, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=fault.bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {p.partition: offset for p, offset in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def dead_letters(fault: FaultStack) -> dict[str, int]:
    """Records in each dead-letter topic of the pipeline."""
    return {
        dlq_topic(topic): sum(end_offsets(fault, dlq_topic(topic)).values())
        for _, _, topic in groups(fault)
    }


def wait_settled(fault: FaultStack, timeout: float = SETTLE_S) -> float:
    """Wait until every group has committed its whole input; the seconds it took."""
    begun = time.monotonic()
    deadline = begun + timeout
    last: dict[str, dict[int, int]] = {}
    while time.monotonic() < deadline:
        last = lags(fault)
        if all(lag == 0 for parts in last.values() for lag in parts.values()):
            return time.monotonic() - begun
        time.sleep(1.0)
    stuck = {name: parts for name, parts in last.items() if any(parts.values())}
    logs = "\n".join(f"--- {n}\n{log_tail(fault.stack, n, 10)}" for n in stuck)
    raise AssertionError(f"lag still {stuck} after {timeout:.0f} s (a stuck partition?)\n{logs}")


def assert_indexed_once(fault: FaultStack, batch: Batch) -> None:
    """Every image of the batch indexed with the embedded pipeline's count of faces; the index
    holds as many faces as every image sent so far has (no duplicate, no stray)."""
    wrong = {}
    with fault.client() as client:
        for key, expected in batch.faces.items():
            state = client.get_image(key)
            got = len(state.faces) if state.status == "indexed" else state.status
            if got != expected:
                wrong[key] = (got, expected)
        stats = client.stats()
    assert not wrong, (
        f"{len(wrong)} images not as embedded (got, expected): {list(wrong.items())[:5]}"
    )
    assert stats.faces == sum(fault.sent.values())
    assert stats.images == len(fault.sent)
    dead = dead_letters(fault)
    assert dead == dict.fromkeys(dead, 0), f"dead-lettered: {dead}"


def counters(fault: FaultStack) -> dict[str, dict[str, float]]:
    """Retries, pauses and dead letters each service counted since it started."""
    out = {}
    for name in ("detector", "embedder", "search"):
        text = _metrics_text(fault.port(name))
        out[name] = {key: _sum(text, metric) for key, metric in COUNTERS.items()}
    return out


def _metrics_text(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode("utf-8"))


def _sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def consumed(fault: FaultStack, name: str) -> float:
    text = _metrics_text(fault.port(name))
    return _sum(text, CONSUMED)


def wait_for(what: str, check: Callable[[], bool], timeout: float = MID_STREAM_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def wait_consumed(fault: FaultStack, name: str, count: int) -> None:
    """Wait until the service has consumed ``count`` more records (it is in mid-stream)."""
    base = consumed(fault, name)
    wait_for(f"{name} to consume {count} records", lambda: consumed(fault, name) - base >= count)


def report(title: str, **figures: Any) -> None:
    print(f"\n[faults] {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# -- kill -9


@pytest.mark.parametrize("victim", ["detector", "embedder", "search"])
def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(
    faults: FaultStack, victim: str
) -> None:
    batch = faults.batch()
    before = consumed(faults, victim)
    pid = faults.pid(victim)
    submitter = Submitter(faults, batch.images)
    submitter.start()
    # In the middle: it has done a fifth of this stream, far from all of it.
    wait_for(
        f"{victim} to consume 100 of this stream",
        lambda: consumed(faults, victim) - before >= STREAM // 5,
    )
    done_at_kill = consumed(faults, victim) - before
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(f"{victim} pid {pid} to die", lambda: faults.stack.service_pid(victim) is None, 10)
    restart_s = faults.restart_missing()
    assert faults.pid(victim) != pid
    submitter.wait()
    settle_s = wait_settled(faults)
    recovery_s = time.monotonic() - killed
    assert_indexed_once(faults, batch)
    report(
        f"kill -9 {victim}",
        done_at_kill=done_at_kill,
        restart_s=round(restart_s, 1),
        settled_after_restart_s=round(settle_s, 1),
        kill_to_lag_zero_s=round(recovery_s, 1),
        redone=consumed(faults, victim) - (STREAM - done_at_kill),
        counters=counters(faults),
    )


# -- the broker stopped and started again


def index_call(faults: FaultStack, data: bytes, timeout: float) -> tuple[grpc.StatusCode, float]:
    """One IndexImages call of one image: its status code and how long it took."""
    begun = time.monotonic()
    with gateway_stub(faults.gateway, faults.stack.admin_key()) as stub:
        request = api_pb2.IndexRequest(data=data, path="probe.jpg")
        try:
            stub.IndexImages(iter([request]), timeout=timeout)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
    return code, time.monotonic() - begun


def test_broker_restart_mid_stream_loses_and_duplicates_nothing(faults: FaultStack) -> None:
    batch = faults.batch()
    probe = faults.batch(1)
    pids = {name: faults.pid(name) for name in SERVICES}
    before = consumed(faults, "detector")
    submitter = Submitter(faults, batch.images)
    submitter.start()
    wait_for(
        "the detector to consume 100 of this stream",
        lambda: consumed(faults, "detector") - before >= STREAM // 5,
    )
    broker = faults.stack.broker()
    stopping = time.monotonic()
    assert broker.stop()
    down_at = time.monotonic()
    # While it is down the gateway refuses, promptly, with UNAVAILABLE (a client retries).
    code, took = index_call(faults, next(iter(probe.images.values())), 60.0)
    assert code == grpc.StatusCode.UNAVAILABLE, f"{code} after {took:.1f} s"
    assert took < GATEWAY_DEADLINE_S + 5.0
    restart_s = faults.restart_missing()
    up_at = time.monotonic()
    submitter.wait()
    # The probe image again, now that the broker is back: accepted.
    code, _ = index_call(faults, next(iter(probe.images.values())), 60.0)
    assert code == grpc.StatusCode.OK
    settle_s = wait_settled(faults)
    lag_zero_at = time.monotonic()
    # Every service rode the outage out: none exited (stack up restarted only the broker).
    assert {name: faults.pid(name) for name in SERVICES} == pids
    assert_indexed_once(faults, batch)
    assert_indexed_once(faults, probe)
    refusals = submitter.refusals
    report(
        "broker stop/start",
        stop_s=round(down_at - stopping, 1),
        restart_s=round(restart_s, 1),
        unavailable_after_s=round(took, 1),
        client_refusals=len(refusals),
        longest_refused_call_s=round(max((r[1] for r in refusals), default=0.0), 1),
        settled_after_restart_s=round(settle_s, 1),
        outage_s=round(up_at - stopping, 1),
        stop_to_lag_zero_s=round(lag_zero_at - stopping, 1),
        counters=counters(faults),
    )


# -- SIGTERM, service by service, under load


def per_image(
    fault: FaultStack, topic: str, start: dict[int, int], ids: set[str]
) -> dict[str, int]:
    """How many records of ``topic`` past ``start`` carry each of ``ids`` as their key."""
    consumer = KafkaConsumer(
        bootstrap_servers=fault.bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=64 * 1024 * 1024,
        enable_incremental_fetch_sessions=False,  # see kafka_consumer_factory
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(start)]
        consumer.assign(parts)
        for part in parts:
            consumer.seek(part, start[part.partition])
        ends = consumer.end_offsets(parts)
        counts: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while any(consumer.position(p) < ends[p] for p in parts):
            assert time.monotonic() < deadline, f"reading {topic} took over 60 s"
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    key = (record.key or b"").decode()
                    if key in ids:
                        counts[key] = counts.get(key, 0) + 1
        return counts
    finally:
        consumer.close()


def sigterm(fault: FaultStack, name: str) -> tuple[int | None, float]:
    """SIGTERM a service: its exit status and the seconds it took to exit."""
    child = fault.stack._children.get(name)
    pid = fault.pid(name)
    begun = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    wait_for(
        f"{name} to exit on SIGTERM", lambda: fault.stack.service_pid(name) is None, DRAIN_S + 20
    )
    status = child.wait(1) if child is not None and child.pid == pid else None
    return status, time.monotonic() - begun


def test_rolling_sigterm_restart_under_load_drains_commits_and_loses_nothing(
    faults: FaultStack,
) -> None:
    batch = faults.batch()
    topics = [topic for _, _, topic in groups(faults)]
    start = {topic: end_offsets(faults, topic) for topic in topics}
    # Slow enough that every service is restarted while images still come in.
    submitter = Submitter(faults, batch.images, rate=STREAM / 60)
    submitter.start()
    exits = {}
    for name in ("detector", "embedder", "search", "gateway"):
        if name != "gateway":
            wait_consumed(faults, name, 30)
        status, took = sigterm(faults, name)
        text = faults.stack.log_path(name).read_text(errors="replace")
        assert status in (0, None), f"{name} exited {status}:\n{log_tail(faults.stack, name)}"
        assert "SIGTERM received, draining" in text and f"{name} stopped" in text
        assert took < DRAIN_S + 10
        restart_s = faults.restart_missing()
        exits[name] = (status, round(took, 1), round(restart_s, 1))
    submitter.wait()
    settle_s = wait_settled(faults)
    assert_indexed_once(faults, batch)
    # Drained and committed: no stage handled a record twice, so each image went through each
    # topic as many times as the client sent it (a gateway restart may make it send twice).
    ids = set(batch.images)
    sent = per_image(faults, topics[0], start[topics[0]], ids)
    for topic in topics[1:]:
        assert per_image(faults, topic, start[topic], ids) == sent, f"a record redone into {topic}"
    report(
        "rolling SIGTERM restart",
        exits_status_seconds_restart=exits,
        client_refusals=len(submitter.refusals),
        settled_s=round(settle_s, 1),
        images_sent_twice=sum(1 for c in sent.values() if c > 1),
        counters=counters(faults),
    )


# -- the index itself, once the stack is down


def test_the_index_on_disk_holds_every_face_once(faults: FaultStack) -> None:
    # This test checks on disk what the fault tests above it in this module sent through the
    # one stack they share; selected alone (pytest -k), there is nothing to check, and sending
    # images here would only check a stream without any fault.
    if not faults.sent:
        pytest.skip("checks the images the fault tests of this module sent; none ran before it")
    faults.stack.down()  # the search service holds the embedded index's lock
    model_id, dim = recognizer_identity(faults.settings.models)
    store = open_store(CoreSettings(qdrant_dir=faults.stack.qdrant_path), model_id, dim)
    try:
        # One pass over every image record, each with its faces.
        found = {image.image_id: len(faces) for page in store.export(1000) for image, faces in page}
        stats = store.stats()
    finally:
        store.close()
    strays = set(found) - set(faults.sent)
    assert not strays, f"images never sent: {sorted(strays)[:5]}"
    wrong = {
        key: (found.get(key), faces)
        for key, faces in faults.sent.items()
        if found.get(key) != faces
    }
    assert not wrong, f"{len(wrong)} images (got, expected): {list(wrong.items())[:5]}"
    # and no face without its image record
    assert (stats.images, stats.faces) == (len(faults.sent), sum(faults.sent.values()))
