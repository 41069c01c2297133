"""Qdrant failing for a while: the search service's embedded index on a small disk that fills up
(every write is then refused for want of room), or a real Qdrant server
stopped and started again. The service retries with backoff, pauses the partition, says so in
its ingest health and metrics, keeps answering queries, and once Qdrant is back catches up
from where it stopped, skipping nothing and doubling nothing."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from disk_checks import fill
from test_services import assert_committed_to_the_end, embeddings_event, nearest_to_yao

from facesearch.devstack.broker import free_port
from facesearch.devstack.qdrant import QdrantServer
from facesearch.proto.v1 import api_pb2, internal_pb2_grpc
from facesearch.rpc.health import check
from facesearch.runtime.service import INGEST_HEALTH

STEP_S = 90.0  # for the service to notice the fault, or to catch up after it


def until(what: str, test: Callable[[], bool]) -> None:
    deadline = time.monotonic() + STEP_S
    while not test():
        assert time.monotonic() < deadline, f"not within {STEP_S:g} s: {what}"
        time.sleep(0.3)


def indexed(stub: Any, image: str) -> bool:
    try:
        stub.GetImage(api_pb2.GetImageRequest(image_id=image))
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
        return False
    return True


def test_a_full_disk_stalls_ingest_visibly_and_it_catches_up_without_skipping(
    kafka: Any,
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    small_disk: Path,
    analyzed: Any,
    face_models: Any,
    metric: Callable[..., float],
) -> None:
    env = {**service_env, "QDRANT_PATH": str(small_disk / "qdrant")}
    topic, model = env["FACESEARCH_TOPIC_EMBEDDINGS"], face_models.model_id
    search = start_service("search", env)
    port = search.metrics_port

    def stalled() -> float:
        return metric(port, "facesearch_stalled_partitions", topic=topic)

    with grpc.insecure_channel(search.target) as channel:
        stub = internal_pb2_grpc.SearchIndexStub(channel)
        kafka.produce(topic, [embeddings_event("players", analyzed, model)])
        until("players.jpg stored", lambda: indexed(stub, analyzed["players"][0].image_id))
        assert check(search.target, INGEST_HEALTH) == "SERVING"
        assert stalled() == 0

        filler = fill(small_disk)
        later = ("gdp", "t1", "yaoming")
        kafka.produce(topic, [embeddings_event(name, analyzed, model) for name in later])
        until("the ingest stalls", lambda: stalled() >= 1)
        assert check(search.target, INGEST_HEALTH) == "NOT_SERVING"
        assert check(search.target) == "SERVING"  # the process lives and answers queries
        assert metric(port, "facesearch_handler_retries_total", topic=topic) >= 3
        assert metric(port, "facesearch_partition_pauses_total", topic=topic) >= 1
        assert not any(indexed(stub, analyzed[name][0].image_id) for name in later)
        assert nearest_to_yao(stub, analyzed, model).image_id == analyzed["players"][0].image_id

        filler.unlink()
        until(
            "the stalled records are stored",
            lambda: all(indexed(stub, analyzed[name][0].image_id) for name in later),
        )
        until("the stall is over", lambda: stalled() == 0)
        assert check(search.target, INGEST_HEALTH) == "SERVING"
    assert metric(port, "facesearch_messages_dead_lettered_total", topic=topic, reason="store") == 0
    assert metric(port, "facesearch_messages_consumed_total", topic=topic) == 1 + len(later)
    assert search.stop() == 0
    assert_committed_to_the_end(kafka, env["FACESEARCH_SEARCH_GROUP"], topic)


def test_a_qdrant_server_that_refuses_connections_is_waited_for_not_serving(
    service_env: dict[str, str], start_service: Callable[..., Any]
) -> None:
    refused = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    search = start_service("search", {**service_env, "QDRANT_URL": refused}, wait=False)
    try:
        until("a retry is logged", lambda: "trying again in" in search.log_text())
        assert search.process is not None and search.process.poll() is None
        assert check(search.target) == "NOT_SERVING"
        assert refused in search.log_text()
    finally:
        assert search.stop(timeout=15) == 0  # a stop while waiting is prompt and clean


def test_a_qdrant_server_stopped_mid_stream_stalls_ingest_and_nothing_is_lost_or_doubled(
    kafka: Any,
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    analyzed: Any,
    face_models: Any,
    metric: Callable[..., float],
    tmp_path: Path,
    qdrant_binary: Path,
) -> None:
    """A real Qdrant server stopped while images arrive, then started again on its storage:
    the search service retries, pauses, reports it, and then stores every image with exactly
    its faces (per image, and in total: nothing doubled)."""
    server = QdrantServer(qdrant_binary, tmp_path / "qdrant-server", free_port(), free_port())
    with server:
        env = {**service_env, "QDRANT_URL": server.url}
        topic, model = env["FACESEARCH_TOPIC_EMBEDDINGS"], face_models.model_id
        search = start_service("search", env)
        port = search.metrics_port
        with grpc.insecure_channel(search.target) as channel:
            stub = internal_pb2_grpc.SearchIndexStub(channel)
            kafka.produce(topic, [embeddings_event("players", analyzed, model)])
            until("players.jpg stored", lambda: indexed(stub, analyzed["players"][0].image_id))

            assert server.stop()
            later = ("gdp", "t1", "yaoming")
            kafka.produce(topic, [embeddings_event(name, analyzed, model) for name in later])
            until(
                "the ingest stalls",
                lambda: metric(port, "facesearch_stalled_partitions", topic=topic) >= 1,
            )
            assert check(search.target, INGEST_HEALTH) == "NOT_SERVING"
            assert check(search.target) == "SERVING"

            server.start()
            server.wait_ready()
            until(
                "the stalled records are stored",
                lambda: all(indexed(stub, analyzed[name][0].image_id) for name in later),
            )
            until("ingest health is back", lambda: check(search.target, INGEST_HEALTH) == "SERVING")
            names = ("players", *later)
            for name in names:
                got = stub.GetImage(api_pb2.GetImageRequest(image_id=analyzed[name][0].image_id))
                assert len(got.faces) == len(analyzed[name][0].faces), name
            total = sum(len(analyzed[name][0].faces) for name in names)
            assert stub.Stats(api_pb2.StatsRequest()).faces == total
        assert metric(port, "facesearch_messages_consumed_total", topic=topic) == len(names)
        assert metric(port, "facesearch_messages_dead_lettered_total", topic=topic) == 0
        assert search.stop() == 0
        assert_committed_to_the_end(kafka, env["FACESEARCH_SEARCH_GROUP"], topic)
