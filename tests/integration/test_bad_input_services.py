"""Bad input on the real pipeline (the four services as processes on the real broker): every
broken, odd or over-limit input, inline and by URI, sent among good photos, and raw garbage
written straight onto each topic. Each bad one is refused at once with its reason or
dead-lettered with it (FAILED in GetImage), each is counted, the odd but valid ones are
indexed, and the good ones sent around them all are: nothing stops the pipeline. Queries
with the same inputs end with a status that names the problem or the limit."""

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from bad_inputs import MIB, broken, padded_jpeg, valid_odd
from gateway_checks import gateway_stub, index, serving, settled, start_pipeline

from facesearch.ids import image_id
from facesearch.proto.v1 import api_pb2, api_pb2_grpc
from facesearch.stream.worker import dlq_topic

# Small limits, so that inputs beyond them are cheap to make: the image limit for every
# service, the message limits for the gateway only.
IMAGE_LIMIT = 4 * MIB
KAFKA_LIMIT = 5 * MIB
GRPC_LIMIT = 6 * MIB
IMAGES_PER_CALL = 40
LIMITS = {
    "FACESEARCH_KAFKA_MAX_MESSAGE_BYTES": str(KAFKA_LIMIT),
    "FACESEARCH_GRPC_MAX_MESSAGE_BYTES": str(GRPC_LIMIT),
    "FACESEARCH_GATEWAY_MAX_IMAGES_PER_CALL": str(IMAGES_PER_CALL),
}
NOT_AN_IMAGE = "bad_image: not an image, or a format facesearch does not read"
CORRUPT = "bad_image: corrupt or truncated image"
PIXELS = "too_large: 30000x30000 pixels exceeds the limit of 50000000 pixels "
PIXELS += "(FACESEARCH_MAX_IMAGE_PIXELS)"
BYTES = f"exceeds the limit of {IMAGE_LIMIT} bytes (FACESEARCH_MAX_IMAGE_BYTES)"
# What each inline input becomes: refused at once (the start of its IndexResult error), or
# accepted and then FAILED with a dead letter's reason, or INDEXED with this many faces.
REFUSED, FAILED, INDEXED = "refused", "failed", "indexed"
OUTCOMES: dict[str, tuple[str, str | int]] = {
    "empty.jpg": (REFUSED, "bad_image: empty file"),
    "truncated.jpg": (FAILED, CORRUPT),
    "corrupt.png": (FAILED, CORRUPT),
    "notes.jpg": (REFUSED, NOT_AN_IMAGE),
    "doc.jpg": (REFUSED, NOT_AN_IMAGE),
    "bomb.png": (REFUSED, PIXELS),
    "garbage.bin": (REFUSED, NOT_AN_IMAGE),
    "over-image-limit.jpg": (REFUSED, f"too_large: {IMAGE_LIMIT + 1} bytes {BYTES}"),
    "over-kafka-limit.jpg": (REFUSED, "too_large: "),
    "cmyk.jpg": (INDEXED, 6),
    "gray16.png": (INDEXED, 1),
    "rgba.png": (INDEXED, 1),
    "animated.gif": (INDEXED, 1),  # its first frame
    "no-face.jpg": (INDEXED, 0),
    "tiny.png": (INDEXED, 0),
}
GOOD = {"players": 22, "gdp": 5, "t1": 6, "yaoming": 1}  # faces in each demo photo
GARBAGE = b"\xff\xfe not an event \x00\x01"  # field 31 of wire type 7: never a protobuf


def inputs(demo: dict[str, Path]) -> dict[str, bytes]:
    return {
        **broken(demo),
        "over-image-limit.jpg": padded_jpeg(demo["gdp"], IMAGE_LIMIT + 1),
        "over-kafka-limit.jpg": padded_jpeg(demo["gdp"], KAFKA_LIMIT),
        **valid_odd(demo),
    }


def write_garbage(kafka: Any, env: dict[str, str]) -> list[str]:
    """Raw bytes onto each of the three topics, keyed by the topic's name; the topics."""
    topics = [env[f"FACESEARCH_TOPIC_{t}"] for t in ("IMAGES", "FACES", "EMBEDDINGS")]
    for topic in topics:
        kafka.produce(topic, [(f"garbage-{topic}".encode(), GARBAGE)])
    return topics


def check_dead_letters(kafka: Any, topics: list[str]) -> None:
    """Each stage put the garbage of its topic on its dead-letter topic, saying why."""
    for topic in topics:
        letters = [
            r for r in kafka.read(dlq_topic(topic), 1) if r.key == f"garbage-{topic}".encode()
        ]
        assert len(letters) == 1, topic
        (letter,) = letters
        headers = dict(letter.headers)
        assert headers["reason"].startswith(b"bad_message: "), headers
        assert headers["original_topic"] == topic.encode()
        assert letter.value == GARBAGE


def test_bad_inputs_are_refused_or_dead_lettered_with_their_reasons_and_the_rest_is_indexed(
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    kafka: Any,
    metric: Callable[..., float],
    demo: dict[str, Path],
    admin_key: str,
) -> None:
    env = {**service_env, "FACESEARCH_MAX_IMAGE_BYTES": str(IMAGE_LIMIT)}
    services = start_pipeline(start_service, env, **LIMITS)
    topics = write_garbage(kafka, env)
    bad = inputs(demo)
    requests, names = [], []
    for (name, data), good in zip(bad.items(), [*GOOD, *GOOD, *GOOD, *GOOD], strict=False):
        requests.append(api_pb2.IndexRequest(data=data, path=name))
        requests.append(api_pb2.IndexRequest(data=demo[good].read_bytes(), path=good))
        names += [name, good]
    by_uri, uri_outcomes = uri_inputs(Path(env["FACESEARCH_URI_ROOTS"]), demo, bad)
    with gateway_stub(services["gateway"].target, admin_key) as gateway:
        results = index(gateway, *requests, *by_uri)
        outcomes = {**{n: OUTCOMES.get(n, (INDEXED, GOOD.get(n))) for n in names}, **uri_outcomes}
        check_outcomes(gateway, [*names, *uri_outcomes], results, outcomes)
    refused = sum(kind == REFUSED for kind, _ in outcomes.values())
    assert metric(services["gateway"].metrics_port, "facesearch_images_submitted_total",
                  outcome="refused") == refused  # fmt: skip
    check_dead_letters(kafka, topics)
    # Inline truncated.jpg and corrupt.png, and truncated.jpg by URI: only decoding finds them.
    assert metric(services["detector"].metrics_port, "facesearch_messages_dead_lettered_total",
                  topic=topics[0], reason="bad_image") == 3  # fmt: skip
    for name, topic in zip(("detector", "embedder", "search"), topics, strict=True):
        port = services[name].metrics_port
        assert metric(port, "facesearch_messages_dead_lettered_total", topic=topic,
                      reason="bad_message") == 1, name  # fmt: skip
    for name, service in services.items():
        assert service.process.poll() is None and serving(service.target), name


def uri_inputs(
    root: Path, demo: dict[str, Path], bad: dict[str, bytes]
) -> tuple[list[api_pb2.IndexRequest], dict[str, tuple[str, str | int]]]:
    """Requests by URI, and what each becomes (named by its URI)."""
    files = {"ok.jpg": demo["t1"].read_bytes(), "truncated.jpg": bad["truncated.jpg"]}
    files["huge.jpg"] = padded_jpeg(demo["gdp"], IMAGE_LIMIT + 2)
    for name, data in files.items():
        (root / name).write_bytes(data)
    outside = root.parent / "outside.jpg"
    shutil.copy(demo["gdp"], outside)
    cases: dict[str, tuple[str, str | int]] = {
        (root / "ok.jpg").as_uri(): (INDEXED, GOOD["t1"]),
        (root / "truncated.jpg").as_uri(): (FAILED, CORRUPT),
        (root / "huge.jpg").as_uri(): (REFUSED, f"too_large: {(root / 'huge.jpg').as_uri()}: "),
        (root / "missing.jpg").as_uri(): (REFUSED, "not_found: "),
        outside.as_uri(): (REFUSED, "bad_uri: "),
        "file://" + str(root) + "/../outside.jpg": (REFUSED, "bad_uri: "),
    }
    return [api_pb2.IndexRequest(uri=uri) for uri in cases], cases


def check_outcomes(
    gateway: api_pb2_grpc.FaceSearchStub,
    names: list[str],
    results: list[Any],
    outcomes: Mapping[str, tuple[str, str | int | None]],
) -> None:
    assert len(results) == len(names)
    for name, result in zip(names, results, strict=True):
        kind, expected = outcomes[name]
        if kind == REFUSED:
            assert result.error.startswith(str(expected)), (name, result.error)
            continue
        answer = settled(gateway, result.image_id)
        if kind == FAILED:
            assert answer.status == api_pb2.IMAGE_STATUS_FAILED, name
            assert answer.error.startswith(str(expected)), (name, answer.error)
        else:
            assert answer.status == api_pb2.IMAGE_STATUS_INDEXED, (name, answer.error)
            assert answer.image.faces == expected, name
    assert outcomes["over-image-limit.jpg"][1] in results[names.index("over-image-limit.jpg")].error
    over_kafka = results[names.index("over-kafka-limit.jpg")].error
    assert "FACESEARCH_KAFKA_MAX_MESSAGE_BYTES" in over_kafka
    huge = results[names.index(next(n for n in names if n.endswith("huge.jpg")))].error
    assert huge.endswith(f"{IMAGE_LIMIT + 2} bytes {BYTES}")


def search_status(
    gateway: api_pb2_grpc.FaceSearchStub, image: bytes
) -> tuple[grpc.StatusCode, str]:
    """The status code and details a Search with ``image`` ended with."""
    try:
        gateway.Search(api_pb2.SearchRequest(image=image))
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_queries_and_calls_beyond_a_limit_end_with_a_status_naming_it(
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    demo: dict[str, Path],
    admin_key: str,
) -> None:
    env = {**service_env, "FACESEARCH_MAX_IMAGE_BYTES": str(IMAGE_LIMIT)}
    services = start_pipeline(start_service, env, **LIMITS)
    invalid, exhausted = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
    expected = {
        "empty.jpg": (invalid, "bad_image: empty file"),
        "truncated.jpg": (invalid, CORRUPT),
        "corrupt.png": (invalid, CORRUPT),
        "notes.jpg": (invalid, NOT_AN_IMAGE),
        "doc.jpg": (invalid, NOT_AN_IMAGE),
        "garbage.bin": (invalid, NOT_AN_IMAGE),
        "bomb.png": (exhausted, PIXELS),
        "over-image-limit.jpg": (exhausted, f"too_large: {IMAGE_LIMIT + 1} bytes {BYTES}"),
        "no-face.jpg": (invalid, "no_face: no face found in the query image"),
        "tiny.png": (invalid, "no_face: "),
        "cmyk.jpg": (grpc.StatusCode.OK, ""),
        "gray16.png": (grpc.StatusCode.OK, ""),
        "rgba.png": (grpc.StatusCode.OK, ""),
        "animated.gif": (grpc.StatusCode.OK, ""),
    }
    queries = inputs(demo)
    with gateway_stub(services["gateway"].target, admin_key) as gateway:
        for name, (code, start) in expected.items():
            got, details = search_status(gateway, queries[name])
            assert (got, details[: len(start)]) == (code, start), (name, details)
        # Beyond the gRPC server's message limit: refused by gRPC itself, before any handler.
        got, details = search_status(gateway, padded_jpeg(demo["gdp"], GRPC_LIMIT + 1))
        assert (got, "larger than max" in details) == (exhausted, True), details
        tiny = queries["tiny.png"]
        with pytest.raises(grpc.RpcError) as too_many:
            index(gateway, *[api_pb2.IndexRequest(data=tiny)] * (IMAGES_PER_CALL + 1))
        assert too_many.value.code() == exhausted
        assert str(too_many.value.details()).startswith(
            f"too_large: more than {IMAGES_PER_CALL} images in one IndexImages call, the limit "
            "(FACESEARCH_GATEWAY_MAX_IMAGES_PER_CALL)"
        )
        assert settled(gateway, image_id(tiny)).status == api_pb2.IMAGE_STATUS_INDEXED
    internal = {
        f"FACESEARCH_GATEWAY_{n.upper()}": services[n].target
        for n in ("detector", "embedder", "search")
    }
    hasty = start_service("gateway", {**env, **internal,
                                      "FACESEARCH_GATEWAY_DEADLINE_SECONDS": "0.001"})  # fmt: skip
    with gateway_stub(hasty.target, admin_key) as hasty_gateway:
        got, details = search_status(hasty_gateway, demo["yaoming"].read_bytes())
    assert got == grpc.StatusCode.DEADLINE_EXCEEDED
    assert details == (
        "deadline: the detector service did not answer within 0.001 s "
        "(FACESEARCH_GATEWAY_DEADLINE_SECONDS)"
    )
    for name, service in services.items():
        assert service.process.poll() is None and serving(service.target), name
