"""The public API on the real pipeline: the four services as processes on the real broker,
the gateway in front. Indexing is asynchronous (QUEUED, then INDEXED or FAILED with the
reason from the dead-letter topics); queries go detector -> embedder -> search over gRPC."""

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from facesearch.ids import image_id
from facesearch.proto.v1 import api_pb2, api_pb2_grpc

FLOW_S = 90.0  # for an image to go through the whole pipeline


@pytest.fixture
def gateway_channel(
    service_env: dict[str, str], start_service: Callable[..., Any]
) -> Iterator[grpc.Channel]:
    """A channel to a gateway in front of this test's detector, embedder and search."""
    internal = {
        name: start_service(name, service_env) for name in ("search", "embedder", "detector")
    }
    env = {
        **service_env,
        **{f"FACESEARCH_GATEWAY_{n.upper()}": s.target for n, s in internal.items()},
    }
    front = start_service("gateway", env)
    with grpc.insecure_channel(front.target) as channel:
        yield channel


@pytest.fixture
def gateway(gateway_channel: grpc.Channel) -> api_pb2_grpc.FaceSearchStub:
    return api_pb2_grpc.FaceSearchStub(gateway_channel)


def index(stub: api_pb2_grpc.FaceSearchStub, *requests: api_pb2.IndexRequest) -> list[Any]:
    return list(stub.IndexImages(iter(requests)).results)


def settled(stub: api_pb2_grpc.FaceSearchStub, image: str) -> api_pb2.GetImageResponse:
    """GetImage once the image left the QUEUED state (or the test's patience ran out)."""
    deadline = time.monotonic() + FLOW_S
    while True:
        answer = stub.GetImage(api_pb2.GetImageRequest(image_id=image))
        if answer.status != api_pb2.IMAGE_STATUS_QUEUED or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_index_through_the_pipeline_then_search_compare_stats_delete(
    gateway: api_pb2_grpc.FaceSearchStub, demo: dict[str, Path], analyzed: dict[str, Any]
) -> None:
    players = demo["players"].read_bytes()
    truncated = demo["gdp"].read_bytes()[:2000]  # a JPEG header, then nothing
    results = index(
        gateway,
        api_pb2.IndexRequest(data=players, path="players.jpg", label="team"),
        api_pb2.IndexRequest(data=demo["t1"].read_bytes(), source_url="https://example.org/t1"),
        api_pb2.IndexRequest(data=b"", path="empty.jpg"),
        api_pb2.IndexRequest(data=b"plain text, not an image", path="notes.jpg"),
        api_pb2.IndexRequest(data=truncated, path="truncated.jpg"),
    )
    kinds = [r.WhichOneof("result") for r in results]
    assert kinds == ["image_id", "image_id", "error", "error", "image_id"]
    assert results[0].image_id == image_id(players)
    assert results[2].error.startswith("bad_image: empty")
    assert results[3].error.startswith("bad_image: not an image")

    indexed = settled(gateway, results[0].image_id)
    assert indexed.status == api_pb2.IMAGE_STATUS_INDEXED
    assert indexed.image.meta.label == "team"
    assert len(indexed.faces) == len(analyzed["players"][0].faces)
    assert settled(gateway, results[1].image_id).image.meta.source_uri == "https://example.org/t1"
    failed = settled(gateway, results[4].image_id)
    assert failed.status == api_pb2.IMAGE_STATUS_FAILED
    assert failed.error.startswith("bad_image")

    found = gateway.Search(api_pb2.SearchRequest(image=demo["yaoming"].read_bytes(), top_k=3))
    (face,) = found.faces
    assert face.matches[0].image_id == image_id(players)
    assert face.matches[0].label == "team"
    assert found.model and found.threshold > 0

    same = gateway.Compare(
        api_pb2.CompareRequest(image_a=players, image_b=demo["yaoming"].read_bytes())
    )
    assert len(same.faces_a) == len(analyzed["players"][0].faces)
    assert sum(p.same_person for p in same.pairs) == 1

    stats = gateway.Stats(api_pb2.StatsRequest())
    assert (stats.images, stats.labels["team"]) == (2, 1)
    deleted = gateway.Delete(api_pb2.DeleteRequest(label="team"))
    assert (deleted.images, deleted.faces) == (1, len(analyzed["players"][0].faces))
    assert gateway.Stats(api_pb2.StatsRequest()).images == 1


def test_bad_queries_end_with_clear_statuses_and_reflection_lists_the_api(
    gateway_channel: grpc.Channel, grey_jpeg: Callable[[Path], Path], tmp_path: Path
) -> None:
    gateway = api_pb2_grpc.FaceSearchStub(gateway_channel)
    cases = [
        (api_pb2.SearchRequest(image=b"garbage"), grpc.StatusCode.INVALID_ARGUMENT, "bad_image"),
        (
            api_pb2.SearchRequest(image=grey_jpeg(tmp_path / "grey.jpg").read_bytes()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "no_face",
        ),
        (
            api_pb2.SearchRequest(image=b"x", top_k=5000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "bad_message",
        ),
    ]
    for request, code, prefix in cases:
        with pytest.raises(grpc.RpcError) as refused:
            gateway.Search(request)
        assert (refused.value.code(), refused.value.details().split(":")[0]) == (code, prefix)
    with pytest.raises(grpc.RpcError) as missing:
        gateway.GetImage(api_pb2.GetImageRequest(image_id="0" * 64))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as empty:
        gateway.Delete(api_pb2.DeleteRequest())
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    reflection = reflection_pb2_grpc.ServerReflectionStub(gateway_channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = reflection.ServerReflectionInfo(iter([request]))
    names = {s.name for s in answer.list_services_response.service}
    assert {"facesearch.v1.FaceSearch", "grpc.health.v1.Health"} <= names


def test_images_sent_by_uri_are_read_from_the_allowed_folder_only(
    gateway: api_pb2_grpc.FaceSearchStub,
    service_env: dict[str, str],
    demo: dict[str, Path],
    tmp_path: Path,
) -> None:
    shared = Path(service_env["FACESEARCH_URI_ROOTS"])
    inside = shared / "t1 copy.jpg"
    shutil.copy(demo["t1"], inside)
    outside = tmp_path / "elsewhere.jpg"
    shutil.copy(demo["gdp"], outside)
    results = index(
        gateway,
        api_pb2.IndexRequest(uri=inside.as_uri(), label="by-ref"),
        api_pb2.IndexRequest(uri=outside.as_uri()),
        api_pb2.IndexRequest(uri=(shared / "missing.jpg").as_uri()),
        api_pb2.IndexRequest(uri="https://example.org/a.jpg"),
    )

    assert results[0].image_id == image_id(inside.read_bytes())
    assert [r.error.split(":")[0] for r in results[1:]] == ["bad_uri", "not_found", "bad_uri"]
    indexed = settled(gateway, results[0].image_id)
    assert indexed.status == api_pb2.IMAGE_STATUS_INDEXED
    assert (indexed.image.meta.label, indexed.image.meta.source_uri) == ("by-ref", inside.as_uri())
    assert len(indexed.faces) > 0
