"""Each service as its own process on the real broker, with this test's own topics and groups:
its consume-process-produce loop, its dead letters, its gRPC methods and health, its metrics,
a clean exit on SIGTERM with offsets committed, and a restart resuming from them."""

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from facesearch.codec import events as event_codec
from facesearch.ids import image_id
from facesearch.pipeline import AnalyzedImage
from facesearch.proto.v1 import api_pb2, events_pb2, internal_pb2, internal_pb2_grpc

Analyzed = dict[str, tuple[AnalyzedImage, np.ndarray]]
DETECTOR_ID = "scrfd_500m_bnkps-test"


def image_event(path: Path) -> tuple[bytes, bytes]:
    data = path.read_bytes()
    meta = api_pb2.ImageMeta(source_uri=str(path), path=str(path), collection="default")
    event = events_pb2.ImageEvent(
        image_id=image_id(data), data=data, meta=meta, submitted_at=event_codec.now()
    )
    return event.image_id.encode(), event.SerializeToString()


def faces_event(name: str, analyzed: Analyzed) -> tuple[bytes, bytes]:
    meta = api_pb2.ImageMeta(source_uri=name, path=name, collection="default")
    event = event_codec.faces_event(analyzed[name][0], meta, DETECTOR_ID, event_codec.now())
    return event.image_id.encode(), event.SerializeToString()


def embeddings_event(name: str, analyzed: Analyzed, model: str) -> tuple[bytes, bytes]:
    faces = events_pb2.FacesEvent.FromString(faces_event(name, analyzed)[1])
    event = event_codec.embeddings_event(faces, analyzed[name][1], model)
    return event.image_id.encode(), event.SerializeToString()


def assert_committed_to_the_end(kafka: Any, group: str, topic: str) -> None:
    assert kafka.committed(group, topic) == kafka.end_offsets(topic)


def test_detector_service_finds_faces_dead_letters_garbage_and_answers_detect(
    kafka: Any,
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    demo: dict[str, Path],
    analyzed: Analyzed,
    metric: Callable[..., float],
) -> None:
    env = service_env
    images, faces = env["FACESEARCH_TOPIC_IMAGES"], env["FACESEARCH_TOPIC_FACES"]
    detector = start_service("detector", env)
    kafka.produce(images, [image_event(demo["players"]), image_event(demo["t1"])])
    kafka.produce(images, [(b"junk", b"\x00 not a protobuf ImageEvent")])

    out = [events_pb2.FacesEvent.FromString(r.value) for r in kafka.read(faces, 2)]
    found = {e.image_id: len(e.faces) for e in out}
    assert found == {analyzed[n][0].image_id: len(analyzed[n][0].faces) for n in ("players", "t1")}
    assert all(len(f.crop) == event_codec.CROP_BYTES for e in out for f in e.faces)
    (dead,) = kafka.read(images + ".dlq", 1)
    headers = dict(dead.headers)
    assert dead.key == b"junk"
    assert headers["reason"].startswith(b"bad_message")
    assert headers["original_topic"] == images.encode()

    with grpc.insecure_channel(detector.target) as channel:
        stub = internal_pb2_grpc.DetectorStub(channel)
        answer = stub.Detect(internal_pb2.DetectRequest(image=demo["yaoming"].read_bytes()))
        assert answer.image_id == analyzed["yaoming"][0].image_id
        assert len(answer.faces) == len(analyzed["yaoming"][0].faces) == 1
        with pytest.raises(grpc.RpcError) as refused:
            stub.Detect(internal_pb2.DetectRequest(image=b"GIF89a truncated"))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(refused.value.details()).startswith("bad_image")

    port = detector.metrics_port
    assert metric(port, "facesearch_messages_consumed_total", topic=images) == 3
    assert metric(port, "facesearch_messages_produced_total", topic=faces) == 2
    assert (
        metric(port, "facesearch_messages_dead_lettered_total", topic=images, reason="bad_message")
        == 1
    )
    assert (
        metric(
            port,
            "facesearch_grpc_requests_total",
            method="/facesearch.v1.Detector/Detect",
            code="INVALID_ARGUMENT",
        )
        == 1
    )
    assert metric(port, "facesearch_faces_per_image_count") == 2
    assert metric(port, "facesearch_faces_per_image_sum") == sum(found.values())
    assert metric(port, "facesearch_inference_seconds_count", stage="detect") == 2
    assert detector.stop() == 0
    assert_committed_to_the_end(kafka, env["FACESEARCH_DETECTOR_GROUP"], images)


def test_embedder_service_embeds_in_batches_like_the_embedded_mode(
    kafka: Any,
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    analyzed: Analyzed,
    face_models: Any,
    metric: Callable[..., float],
) -> None:
    env = {
        **service_env,
        "FACESEARCH_EMBEDDER_MAX_BATCH": "8",
        "FACESEARCH_EMBEDDER_MAX_WAIT_MS": "1000",
    }
    faces, embeddings = env["FACESEARCH_TOPIC_FACES"], env["FACESEARCH_TOPIC_EMBEDDINGS"]
    names = ["players", "gdp", "t1", "yaoming"]
    # Queued before the embedder starts, so its first batches find several messages waiting.
    kafka.produce(faces, [faces_event(n, analyzed) for n in names])
    embedder = start_service("embedder", env)

    out = [events_pb2.EmbeddingsEvent.FromString(r.value) for r in kafka.read(embeddings, 4)]
    by_id = {e.image_id: e for e in out}
    assert len(out) == 4
    for name in names:
        image, vectors = analyzed[name]
        event = by_id[image.image_id]
        assert event.model == face_models.model_id
        got = np.array([list(f.vector) for f in event.faces], dtype=np.float32)
        np.testing.assert_allclose(got.reshape(vectors.shape), vectors, atol=1e-4)

    port = embedder.metrics_port
    batches = metric(port, "facesearch_batch_size_count", topic=faces)
    assert metric(port, "facesearch_batch_size_sum", topic=faces) == 4
    assert 1 <= batches < 4, "four waiting messages were never embedded together"
    with grpc.insecure_channel(embedder.target) as channel:
        stub = internal_pb2_grpc.EmbedderStub(channel)
        crop = analyzed["yaoming"][0].faces[0].crop.tobytes()
        answer = stub.Embed(internal_pb2.EmbedRequest(crops=[crop]))
        np.testing.assert_allclose(answer.vectors[0].values, analyzed["yaoming"][1][0], atol=1e-4)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Embed(internal_pb2.EmbedRequest(crops=[b"too short"]))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert embedder.stop() == 0
    assert_committed_to_the_end(kafka, env["FACESEARCH_EMBEDDER_GROUP"], faces)


def wait_indexed(
    stub: internal_pb2_grpc.SearchIndexStub, image: str, timeout: float = 60.0
) -> api_pb2.GetImageResponse:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return stub.GetImage(api_pb2.GetImageRequest(image_id=image))
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def nearest_to_yao(stub: Any, analyzed: Analyzed, model: str) -> Any:
    """The one stored face nearest yaoming.jpg's, through SearchVectors."""
    query = internal_pb2.SearchVectorsRequest(
        vectors=[internal_pb2.Vector(values=analyzed["yaoming"][1][0].tolist())],
        model=model,
        top_k=1,
        threshold=0.25,
    )
    (best,) = stub.SearchVectors(query).results[0].matches
    return best


def test_search_service_stores_searches_and_resumes_from_its_committed_offset(
    kafka: Any,
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    analyzed: Analyzed,
    face_models: Any,
    metric: Callable[..., float],
) -> None:
    env = service_env
    topic, model = env["FACESEARCH_TOPIC_EMBEDDINGS"], face_models.model_id
    search = start_service("search", env)
    kafka.produce(topic, [embeddings_event(n, analyzed, model) for n in ("players", "gdp")])
    players = analyzed["players"][0]
    with grpc.insecure_channel(search.target) as channel:
        stub = internal_pb2_grpc.SearchIndexStub(channel)
        got = wait_indexed(stub, players.image_id)
        wait_indexed(stub, analyzed["gdp"][0].image_id)
        assert got.status == api_pb2.IMAGE_STATUS_INDEXED
        assert [f.face_index for f in got.faces] == list(range(len(players.faces)))
        assert nearest_to_yao(stub, analyzed, model).image_id == players.image_id
        with pytest.raises(grpc.RpcError) as refused:
            stub.SearchVectors(internal_pb2.SearchVectorsRequest(model="another-model"))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert metric(search.metrics_port, "facesearch_qdrant_seconds_count", operation="upsert") == 2
    assert metric(search.metrics_port, "facesearch_qdrant_seconds_count", operation="query") == 1
    assert metric(search.metrics_port, "facesearch_indexing_latency_seconds_count") == 2
    assert search.stop() == 0
    group = env["FACESEARCH_SEARCH_GROUP"]
    assert_committed_to_the_end(kafka, group, topic)

    kafka.produce(topic, [embeddings_event("t1", analyzed, model)])
    again = start_service("search", env)
    with grpc.insecure_channel(again.target) as channel:
        stub = internal_pb2_grpc.SearchIndexStub(channel)
        wait_indexed(stub, analyzed["t1"][0].image_id)
        stats = stub.Stats(api_pb2.StatsRequest())
        assert stats.images == 3
    # The restarted process read only what was new since the commit.
    assert metric(again.metrics_port, "facesearch_messages_consumed_total", topic=topic) == 1
    assert again.stop() == 0
    assert_committed_to_the_end(kafka, group, topic)


def test_a_service_without_its_broker_address_names_the_variable(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facesearch_services.detector"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "FACESEARCH_KAFKA_BOOTSTRAP is not set" in done.stderr
