"""End to end: ``facesearch stack up`` with the real Kafka broker and the real services, on
free ports in a temporary data folder; the sample photos (and ../shared/data/faces/
face_recognition when present) indexed through the gateway with ``facesearch index
--gateway``; ``search --gateway`` with yaoming.jpg finds Yao Ming in players.jpg first; every
service's /metrics counts what was sent; everything SERVING, the health probe command agrees;
after ``down`` no process of the stack is left. The images and faces topics, created or set
by the stack, keep records a day, as deploy/k8s's do."""

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from facesearch.devstack.stack import KAFKA, QDRANT, SERVICES
from facesearch.devstack.topics import ensure_topics, stack_topics

UP_TIMEOUT_S = 600  # the broker, then four services loading their models, on two cores
Run = Callable[..., subprocess.CompletedProcess[str]]


def processes_of(home: Path, pids: set[int]) -> list[str]:
    """Live processes that belong to the stack of ``home``: one of ``pids``, or one started
    with that data folder (the services' FACESEARCH_HOME, the broker's config path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[0] == "Z":
            continue  # exited; only its parent's wait is missing
        started_here = f"FACESEARCH_HOME={home}\0" in environ + "\0" or str(home) in args
        if int(entry.name) in pids or started_here:
            found.append(f"{entry.name}: {args.replace(chr(0), ' ')[:200]}")
    return found


def index_and_search(
    run: Run, env: dict[str, str], gateway: str, demo: dict[str, Path], extra: Path | None
) -> dict[str, Any]:
    """Index the sample photos (and ``extra``) through the gateway; search with yaoming.jpg."""
    photos = [demo[n] for n in ("players", "gdp", "t1")]
    done = run(env, "index", "--gateway", gateway, "--json", *photos, *([extra] if extra else []))
    summary: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    # Every photo and video of face_recognition's folders is indexed (its one video too).
    assert summary["failed"] == [], summary["failed"]
    found = run(env, "search", "--gateway", gateway, "--json", demo["yaoming"])
    assert found.returncode == 0, found.stderr
    (face,) = json.loads(found.stdout)["faces"]
    assert Path(face["matches"][0]["path"]).name == "players.jpg"
    return summary


def assert_counted(components: dict[str, Any], sent: int, metric: Callable[..., float]) -> None:
    """Every stage consumed and produced exactly what the one before it sent (none was
    dead-lettered), each
    image's indexing latency was observed, and the one Search's matches, their decisions and
    its gallery were counted."""
    ports = {name: c["metrics_port"] for name, c in components.items()}
    images, faces, embeddings = (f"facesearch.{t}.v1" for t in ("images", "faces", "embeddings"))
    consumed, produced = "facesearch_messages_consumed_total", "facesearch_messages_produced_total"
    assert metric(ports["gateway"], produced, topic=images) == sent
    assert metric(ports["detector"], consumed, topic=images) == sent
    # One faces event per image, and per sampled frame of a video.
    events = metric(ports["detector"], produced, topic=faces)
    assert events >= sent
    assert metric(ports["embedder"], consumed, topic=faces) == events
    assert metric(ports["embedder"], produced, topic=embeddings) == events
    assert metric(ports["search"], consumed, topic=embeddings) == events
    assert metric(ports["search"], "facesearch_indexing_latency_seconds_count") == sent
    assert metric(ports["gateway"], "facesearch_search_matches_count") == 1  # yaoming's one face
    assert metric(ports["gateway"], "facesearch_search_matches_sum") >= 1
    # Yao Ming found as a "match" in the gallery that Search counted (a few dozen faces).
    assert metric(ports["gateway"], "facesearch_search_decisions_total", decision="match") >= 1
    assert metric(ports["gateway"], "facesearch_search_gallery_faces_count") == 1
    assert metric(ports["gateway"], "facesearch_search_gallery_faces_sum") >= 1


def test_up_index_search_status_down(
    stack_env: dict[str, str],
    run_with_env: Run,
    demo: dict[str, Path],
    face_data_if_present: Path | None,
    metric: Callable[..., float],
) -> None:
    run = run_with_env
    home = Path(stack_env["FACESEARCH_HOME"]).resolve()
    pids: set[int] = set()
    try:
        done = run(stack_env, "stack", "up", "--json", timeout=UP_TIMEOUT_S)
        assert done.returncode == 0, done.stderr
        assert "starting kafka... ready in" in done.stderr
        report = json.loads(done.stdout)
        assert report["started"] == [KAFKA, *SERVICES]
        components = {c["name"]: c for c in report["components"]}
        pids = {c["pid"] for c in components.values()}
        assert {n: c["health"] for n, c in components.items()} == {
            n: "SERVING" for n in (KAFKA, *SERVICES)
        }
        gateway = components["gateway"]
        assert gateway["grpc_port"] == int(stack_env["FACESEARCH_GATEWAY_GRPC_PORT"])
        for name in SERVICES:
            assert (home / "stack" / f"{name}.pid").read_text().strip() == str(
                components[name]["pid"]
            )

        assert run(stack_env, "stack", "up").returncode == 0  # already up: leaves it alone
        # Raw photos and face crops are kept a day, not the broker's default week.
        bootstrap = f"127.0.0.1:{stack_env['FACESEARCH_STACK_KAFKA_PORT']}"
        kept = topic_configs(bootstrap, ["facesearch.images.v1", "facesearch.faces.v1"])
        assert {topic: config["retention.ms"] for topic, config in kept.items()} == {
            "facesearch.images.v1": "86400000",
            "facesearch.faces.v1": "86400000",
        }
        status = run(stack_env, "stack", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        probe = subprocess.run(
            [sys.executable, "-m", "facesearch.rpc.health", gateway["address"]],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (probe.returncode, probe.stdout.strip()) == (0, "SERVING")
        extra = face_data_if_present and face_data_if_present / "face_recognition"
        summary = index_and_search(run, stack_env, gateway["address"], demo, extra)
        assert summary["indexed"] >= 3
        # Copies of one photo at other paths are not sent again ("unchanged", as embedded).
        assert_counted(components, summary["indexed"], metric)
    finally:
        down = run(stack_env, "stack", "down", "--json", timeout=300)
    assert down.returncode == 0, down.stderr
    assert set(json.loads(down.stdout)["stopped"]) == {KAFKA, *SERVICES}
    assert processes_of(home, pids) == []
    assert run(stack_env, "stack", "status").returncode == 3
    assert (home / "stack" / "logs" / "kafka.log").is_file()


def test_a_qdrant_server_shared_by_two_search_replicas(
    stack_env: dict[str, str],
    run_with_env: Run,
    demo: dict[str, Path],
    metric: Callable[..., float],
    qdrant_binary: Path,
) -> None:
    """``stack up --qdrant-server --search-replicas 2``: the index lives in a real Qdrant server
    (none in the data folder), both replicas consume the embeddings and answer the gateway's
    queries, and ``down`` stops the server too."""
    run = run_with_env
    env = {**stack_env, "QDRANT_BIN": str(qdrant_binary)}  # stack_env drops QDRANT_*
    home = Path(env["FACESEARCH_HOME"]).resolve()
    searches = ["search", "search-2"]
    pids: set[int] = set()
    try:
        up = ["stack", "up", "--qdrant-server", "--search-replicas", "2", "--json"]
        done = run(env, *up, timeout=UP_TIMEOUT_S)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["started"] == [KAFKA, QDRANT, *searches, "embedder", "detector", "gateway"]
        components = {c["name"]: c for c in report["components"]}
        pids = {c["pid"] for c in components.values()}
        assert {c["health"] for c in components.values()} == {"SERVING"}
        gateway = components["gateway"]["address"]
        summary = index_and_search(run, env, gateway, demo, None)
        assert summary["indexed"] == 3

        stats = json.loads(run(env, "stats", "--gateway", gateway, "--json").stdout)
        assert (stats["images"], stats["faces"]) == (3, 22 + 5 + 6)
        assert stats["location"] == components[QDRANT]["address"]
        assert not (home / "qdrant").exists()  # nothing in the embedded index's folders
        assert not (home / "edge").exists()
        consumed = "facesearch_messages_consumed_total"
        ports = [components[n]["metrics_port"] for n in searches]
        events = metric(
            components["detector"]["metrics_port"],
            "facesearch_messages_produced_total",
            topic="facesearch.faces.v1",
        )
        embeddings = "facesearch.embeddings.v1"
        assert sum(metric(port, consumed, topic=embeddings) for port in ports) == events
        for _ in range(8):
            found = run(env, "search", "--gateway", gateway, "--json", demo["yaoming"])
            assert found.returncode == 0, found.stderr
        method = "/facesearch.v1.SearchIndex/SearchVectors"
        answered = [
            metric(p, "facesearch_grpc_requests_total", method=method, code="OK") for p in ports
        ]
        assert sum(answered) == 9 and min(answered) >= 1, answered  # round robin over both
    finally:
        down = run(env, "stack", "down", "--json", timeout=300)
    assert down.returncode == 0, down.stderr
    assert set(json.loads(down.stdout)["stopped"]) == {KAFKA, QDRANT, *searches, *SERVICES}
    assert processes_of(home, pids) == []


TOPICS_YAML = Path(__file__).parents[2] / "deploy" / "k8s" / "base" / "kafka" / "topics.yaml"


def topic_configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics]
        # {resource type: {topic: {key: {the config's data}}}}
        (by_topic,) = admin.describe_configs(resources, config_filter="all").values()
        return {
            topic: {
                key: str(data.get("value", data.get("config_value"))) for key, data in found.items()
            }
            for topic, found in by_topic.items()
        }
    finally:
        admin.close()


def test_the_stack_creates_or_sets_the_topics_it_keeps_its_own_way(kafka: Any) -> None:
    base = f"t{uuid.uuid4().hex[:10]}"
    names = ("IMAGES", "FACES", "USAGE", "AUDIT")
    env = {f"FACESEARCH_TOPIC_{n}": f"{base}.{n.lower()}" for n in names}
    topics = stack_topics(env)
    assert list(topics) == list(env.values())
    faces = env["FACESEARCH_TOPIC_FACES"]
    kafka.new_topics(faces, partitions=1)  # as auto-creation left it: the broker's default week

    ensure_topics(kafka.bootstrap, topics)
    ensure_topics(kafka.bootstrap, topics)  # again: nothing changes

    configs = topic_configs(kafka.bootstrap, list(topics))
    for topic, wanted in topics.items():
        assert {key: configs[topic][key] for key in wanted} == wanted, topic
    assert configs[faces]["retention.ms"] == "86400000"
    assert configs[env["FACESEARCH_TOPIC_AUDIT"]]["retention.ms"] == str(400 * 86_400_000)


def test_the_stack_keeps_them_as_long_as_kubernetes_does() -> None:
    topics = {
        doc["spec"]["topicName"]: doc["spec"]["config"]
        for doc in yaml.safe_load_all(TOPICS_YAML.read_text())
    }
    for name, wanted in stack_topics({}).items():
        config = {key: str(value) for key, value in topics[name].items()}
        assert {key: config[key] for key in wanted} == wanted, name
