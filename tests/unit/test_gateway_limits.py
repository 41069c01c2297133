"""The gateway's limits without the network: each one is read from its variable (and a value
that would refuse everything is refused at start), and a request beyond it ends with the
status that names it: images per IndexImages call, image bytes (before the detector is
called), the deadline of each internal call; errors map to their gRPC statuses."""

import io
from typing import Any

import grpc
import pytest
from gateway_fakes import GATEWAY, fake_backends, gateway_servicer
from PIL import Image

from facesearch.errors import ConfigError, DeadlineError, ImageTooLargeError
from facesearch.proto.v1 import api_pb2
from facesearch.rpc.edge import error_from_details, message_options, status_of
from facesearch.rpc.settings import SERVICES, GatewaySettings
from facesearch_services.gateway.backends import InternalCalls
from facesearch_services.gateway.servicer import GatewayServicer


def png_1x1() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG_1X1 = png_1x1()


class Context:
    def __init__(self, remaining: float | None = None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining


class Sent:
    def get(self, timeout: float) -> object:
        return object()


class Producer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, topic: str, key: bytes, value: bytes) -> Sent:
        self.sent.append(key)
        return Sent()

    def flush(self, timeout: float) -> None:
        pass


class LateCall(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """What a stub raises when its deadline ran out."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return "Deadline Exceeded"


class Stub:
    """A detector that never answers in time, and records the timeout it was given."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def Detect(self, request: Any, timeout: float) -> Any:
        self.timeouts.append(timeout)
        # Like grpc's own errors, an RpcError that is also a Call; the servicer reads only its
        # code() and details(), and an exception's creation does not check abstract methods.
        raise LateCall()  # type: ignore[abstract]


def servicer(env: dict[str, str]) -> tuple[GatewayServicer, Producer, Stub, list[str]]:
    producer, stub = Producer(), Stub()
    outcomes: list[str] = []
    backends = fake_backends(
        producer=producer, detector=stub, embedder=stub, search=stub, record_queued=outcomes.append
    )
    return gateway_servicer(backends, env), producer, stub, outcomes


def aborted(call: Any, *args: Any) -> tuple[grpc.StatusCode, str]:
    """The status and details a ``translate_errors`` method aborted with."""

    class Aborted(Exception):
        pass

    class AbortingContext(Context):
        def abort(self, code: grpc.StatusCode, details: str) -> None:
            self.code, self.details = code, details
            raise Aborted

    context = AbortingContext()
    with pytest.raises(Aborted):
        call(*args, context)
    return context.code, context.details


def test_the_limits_are_read_from_their_variables() -> None:
    settings = GatewaySettings.from_env(
        {
            **GATEWAY,
            "FACESEARCH_GATEWAY_MAX_IMAGES_PER_CALL": "7",
            "FACESEARCH_GATEWAY_DEADLINE_SECONDS": "2.5",
            "FACESEARCH_GRPC_MAX_MESSAGE_BYTES": "1048576",
        }
    )
    assert (settings.max_images_per_call, settings.deadline_s) == (7, 2.5)
    assert settings.server.max_message_bytes == 1048576
    defaults = GatewaySettings.from_env(GATEWAY)
    assert (defaults.max_images_per_call, defaults.deadline_s) == (1000, 30.0)
    assert defaults.server.max_message_bytes == 64 * 1024 * 1024
    assert message_options(1048576) == [
        ("grpc.max_send_message_length", 1048576),
        ("grpc.max_receive_message_length", 1048576),
    ]


@pytest.mark.parametrize(
    "name",
    [
        "FACESEARCH_GATEWAY_MAX_IMAGES_PER_CALL",
        "FACESEARCH_GATEWAY_DEADLINE_SECONDS",
        "FACESEARCH_GRPC_MAX_MESSAGE_BYTES",
        "FACESEARCH_KAFKA_MAX_MESSAGE_BYTES",
        "FACESEARCH_MAX_IMAGE_BYTES",
        "FACESEARCH_MAX_IMAGE_PIXELS",
        "FACESEARCH_MAX_FACES_PER_IMAGE",
    ],
)
def test_a_limit_of_zero_is_refused_by_name(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}=0 must be above 0"):
        GatewaySettings.from_env({**GATEWAY, name: "0"})


def test_every_service_reads_the_grpc_message_limit() -> None:
    for settings in SERVICES.values():
        assert "FACESEARCH_GRPC_MAX_MESSAGE_BYTES" in settings.env_names()


def test_images_beyond_the_limit_of_one_call_are_refused_naming_it() -> None:
    gateway, producer, _, outcomes = servicer({"FACESEARCH_GATEWAY_MAX_IMAGES_PER_CALL": "3"})
    requests = iter([api_pb2.IndexRequest(data=PNG_1X1) for _ in range(5)])

    code, details = aborted(gateway.IndexImages, requests)

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.startswith("too_large: more than 3 images in one IndexImages call")
    assert "(FACESEARCH_GATEWAY_MAX_IMAGES_PER_CALL)" in details
    assert len(producer.sent) == 3  # the ones before the limit were queued
    assert outcomes == ["queued"] * 3 + ["refused"]


def test_images_up_to_the_limit_of_one_call_are_taken() -> None:
    gateway, _, _, outcomes = servicer({"FACESEARCH_GATEWAY_MAX_IMAGES_PER_CALL": "3"})
    requests = iter([api_pb2.IndexRequest(data=PNG_1X1) for _ in range(3)])

    answer = gateway.IndexImages(requests, Context())  # type: ignore[arg-type]

    assert [r.WhichOneof("result") for r in answer.results] == ["image_id"] * 3
    assert outcomes == ["queued"] * 3


def test_a_query_image_over_the_byte_limit_is_refused_before_the_detector() -> None:
    gateway, _, stub, _ = servicer({"FACESEARCH_MAX_IMAGE_BYTES": "100"})

    code, details = aborted(gateway.Search, api_pb2.SearchRequest(image=b"x" * 101))

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == (
        "too_large: 101 bytes exceeds the limit of 100 bytes (FACESEARCH_MAX_IMAGE_BYTES)"
    )
    assert stub.timeouts == []


def test_an_internal_call_past_the_gateways_deadline_names_the_setting() -> None:
    gateway, _, stub, _ = servicer({"FACESEARCH_GATEWAY_DEADLINE_SECONDS": "2.5"})

    code, details = aborted(gateway.Search, api_pb2.SearchRequest(image=PNG_1X1))

    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert details == (
        "deadline: the detector service did not answer within 2.5 s "
        "(FACESEARCH_GATEWAY_DEADLINE_SECONDS)"
    )
    assert stub.timeouts == [2.5]


def test_the_callers_shorter_deadline_is_passed_on_and_named() -> None:
    gateway, _, stub, _ = servicer({})

    with pytest.raises(DeadlineError, match="did not answer within the deadline of the call"):
        calls = InternalCalls(gateway.settings, gateway.backends.get(), Context(remaining=0.25))  # type: ignore[arg-type]
        calls.call(stub.Detect, object(), "detector")
    assert stub.timeouts == [0.25]


def test_limit_errors_map_to_their_statuses_and_back() -> None:
    assert status_of(DeadlineError("late")) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert status_of(ImageTooLargeError("big")) == grpc.StatusCode.RESOURCE_EXHAUSTED
    error = error_from_details("deadline: the search service did not answer within 1 s")
    assert isinstance(error, DeadlineError)
    assert str(error) == "the search service did not answer within 1 s"


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), float("-inf")])
def test_a_threshold_that_is_not_a_number_is_refused_before_any_call(threshold: float) -> None:
    gateway, _, stub, _ = servicer({})
    request = api_pb2.SearchRequest(image=PNG_1X1, threshold=threshold)

    code, details = aborted(gateway.Search, request)

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("bad_message: threshold must be a finite number")
    assert stub.timeouts == []
