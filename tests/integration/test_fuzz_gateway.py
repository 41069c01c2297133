"""The gateway's IndexImages and Search fuzzed with generated inputs (hypothesis) on the real
pipeline: random bytes, damaged and odd images of every mode and format, headers that claim
any size, URIs of any shape, any label, filter, top_k and threshold. Every answer is OK or a
status from the documented set with a message; never UNKNOWN or INTERNAL; and afterwards the
four services still serve and a good photo is still indexed.

Bounded for CI: one pipeline for the whole run, ``EXAMPLES`` examples per method, no example
database, no shrinking, and each method stops generating work after ``BUDGET_S`` seconds."""

import io
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import grpc
from bad_inputs import png_claiming
from gateway_checks import gateway_stub, index, serving, settled, start_pipeline
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from facesearch.proto.v1 import api_pb2, api_pb2_grpc

EXAMPLES = 150
BUDGET_S = 40.0
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# What a refusal may be: a bad input, a limit, a missing file or image.
EXPECTED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,
}
RESULT_ERRORS = ("bad_image: ", "too_large: ", "unsupported_type: ", "bad_uri: ", "not_found: ")
MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I;16", "I", "F"]
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]


@st.composite
def images(draw: st.DrawFn) -> bytes:
    """A small image of any mode, saved in any format that takes it (else as PNG)."""
    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    mode = draw(st.sampled_from(MODES))
    seed = draw(st.binary(min_size=1, max_size=64))
    image = Image.frombytes("L", (width, height), (seed * (width * height))[: width * height])
    image = image.convert(mode) if mode not in ("I;16",) else _gray16(image)
    for kind in (draw(st.sampled_from(FORMATS)), "PNG", "TIFF"):
        buffer = io.BytesIO()
        try:
            image.save(buffer, format=kind)
        except (OSError, ValueError, KeyError):
            continue
        return buffer.getvalue()
    raise AssertionError(f"no format takes mode {mode}")


def _gray16(image: Image.Image) -> Image.Image:
    wide = Image.new("I;16", image.size)
    pixels = cast(tuple[int, ...], image.get_flattened_data())  # one band: one int a pixel
    wide.putdata([v * 257 for v in pixels])
    return wide


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """An image with bytes flipped, cut short, or both."""
    data = bytearray(draw(images()))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


def blank_png() -> bytes:
    """A small grey image: decodes, holds no face."""
    buffer = io.BytesIO()
    Image.new("L", (32, 32), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def image_bytes() -> st.SearchStrategy[bytes]:
    claims = st.builds(png_claiming, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
    return st.one_of(st.binary(max_size=4096), images(), damaged(), claims)


def uris(root: str) -> st.SearchStrategy[str]:
    inside = st.text(max_size=300).map(lambda name: f"{root}/{name}")
    fixed = st.sampled_from(
        [
            "file:///etc/passwd",
            f"{root}/../x.jpg",
            f"file://{root}/a.jpg",
            "http://a/b.jpg",
            "relative.jpg",
            f"file://elsewhere{root}/a.jpg",
            "",
        ]
    )
    return st.one_of(fixed, inside, st.text(max_size=300))


def index_requests(root: str) -> st.SearchStrategy[api_pb2.IndexRequest]:
    text = st.text(max_size=80)
    by_data = st.builds(
        lambda data, label, collection, path, source: api_pb2.IndexRequest(
            data=data, label=label, collection=collection, path=path, source_url=source
        ),
        image_bytes(), text, text, text, text,
    )  # fmt: skip
    by_uri = st.builds(lambda uri: api_pb2.IndexRequest(uri=uri), uris(root))
    return st.one_of(by_data, by_uri)


def search_requests() -> st.SearchStrategy[api_pb2.SearchRequest]:
    def request(data: bytes, top_k: int, threshold: float | None, label: str) -> Any:
        request = api_pb2.SearchRequest(image=data, top_k=top_k)
        if threshold is not None:
            request.threshold = threshold
        request.filters.label = label
        return request

    return st.builds(
        request,
        image_bytes(),
        st.integers(0, 1000) | st.integers(-(2**31), 2**31 - 1),  # mostly in range
        st.none() | st.floats(width=32),
        st.text(max_size=40),
    )


def refused_as_expected(exc: grpc.RpcError) -> str:
    """The facesearch code of a refusal with an expected status and a message."""
    assert isinstance(exc, grpc.Call)
    assert exc.code() in EXPECTED, (exc.code(), exc.details())
    assert exc.details(), exc.code()
    return str(exc.details()).split(":")[0]


def test_fuzzed_index_and_search_calls_end_ok_or_with_an_expected_status(
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    demo: dict[str, Path],
    admin_key: str,
) -> None:
    services = start_pipeline(start_service, service_env)
    root = service_env["FACESEARCH_URI_ROOTS"]
    (Path(root) / "a.jpg").write_bytes(demo["yaoming"].read_bytes())
    with gateway_stub(services["gateway"].target, admin_key) as gateway:
        indexed, searched = fuzz_index(gateway, root), fuzz_search(gateway)
        # The generated inputs reach past the first checks: some are queued, some decoded.
        assert {"image_id", "bad_image", "bad_uri", "too_large"} <= set(indexed), indexed
        assert {"bad_image", "no_face", "too_large"} <= set(searched), searched
        (result,) = index(gateway, api_pb2.IndexRequest(data=demo["gdp"].read_bytes()))
        assert settled(gateway, result.image_id).status == api_pb2.IMAGE_STATUS_INDEXED
    for name, service in services.items():
        assert service.process.poll() is None and serving(service.target), name


def fuzz_index(gateway: api_pb2_grpc.FaceSearchStub, root: str) -> Counter[str]:
    """IndexImages with 1-4 fuzzed requests a call; how many results (or refused calls) of
    each kind (``image_id`` or the error's code) there were."""
    stop, seen = time.monotonic() + BUDGET_S, Counter[str]()

    @FUZZ
    @given(st.lists(index_requests(root), min_size=1, max_size=4))
    # Run first, whatever the draw: one of each kind the assertions below expect to see.
    @example(
        [
            api_pb2.IndexRequest(data=blank_png()),
            api_pb2.IndexRequest(data=b"not an image"),
            api_pb2.IndexRequest(uri="file:///etc/passwd"),
            api_pb2.IndexRequest(data=png_claiming(30000, 30000)),
        ]
    )
    def check(requests: list[api_pb2.IndexRequest]) -> None:
        if time.monotonic() > stop:
            return
        try:
            results = index(gateway, *requests)
        except grpc.RpcError as exc:
            seen[refused_as_expected(exc)] += 1
            return
        assert len(results) == len(requests)
        for result in results:
            kind = result.WhichOneof("result")
            assert kind == "image_id" or result.error.startswith(RESULT_ERRORS), result
            seen[kind if kind == "image_id" else result.error.split(":")[0]] += 1

    check()
    return seen


def fuzz_search(gateway: api_pb2_grpc.FaceSearchStub) -> Counter[str]:
    """Search with fuzzed requests; how many ended OK or with each error's code."""
    stop, seen = time.monotonic() + BUDGET_S, Counter[str]()

    @FUZZ
    @given(search_requests())
    @example(api_pb2.SearchRequest(image=blank_png(), top_k=5))
    @example(api_pb2.SearchRequest(image=b"not an image", top_k=5))
    @example(api_pb2.SearchRequest(image=png_claiming(30000, 30000), top_k=5))
    def check(request: api_pb2.SearchRequest) -> None:
        if time.monotonic() > stop:
            return
        try:
            found = gateway.Search(request, timeout=60)
        except grpc.RpcError as exc:
            seen[refused_as_expected(exc)] += 1
            return
        seen["ok"] += 1
        assert found.faces
        assert math.isfinite(found.threshold)

    check()
    return seen
