"""A service process's life without Kafka or models: health NOT_SERVING while it starts,
SERVING once ready, gone once it has drained; calls before the servicer is ready are refused
as UNAVAILABLE; /metrics counts requests by method and code."""

import signal
import threading
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from facesearch.devstack.broker import free_port
from facesearch.proto.v1 import internal_pb2, internal_pb2_grpc
from facesearch.rpc.edge import Pending, translate_errors
from facesearch.rpc.health import check
from facesearch.rpc.settings import ServerSettings
from facesearch.runtime.service import ServiceRuntime

SERVICE = "facesearch.v1.Embedder"


class SlowStartEmbedder(internal_pb2_grpc.EmbedderServicer):
    def __init__(self) -> None:
        self.model: Pending[str] = Pending()

    @translate_errors
    def Embed(
        self, request: internal_pb2.EmbedRequest, context: grpc.ServicerContext
    ) -> internal_pb2.EmbedResponse:
        return internal_pb2.EmbedResponse(model=self.model.get())


@pytest.fixture
def signals() -> Iterator[None]:
    """ServiceRuntime.start installs SIGTERM/SIGINT handlers: give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_health_follows_the_life_of_the_process(signals: None) -> None:
    settings = ServerSettings("embedder", "127.0.0.1", free_port(), free_port(), 1.0, "")
    runtime = ServiceRuntime(settings, [SERVICE])
    servicer = SlowStartEmbedder()
    internal_pb2_grpc.add_EmbedderServicer_to_server(servicer, runtime.server)
    runtime.start()
    target = settings.grpc_address
    with grpc.insecure_channel(target) as channel:
        stub = internal_pb2_grpc.EmbedderStub(channel)
        assert check(target) == check(target, SERVICE) == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as starting:
            stub.Embed(internal_pb2.EmbedRequest())
        assert starting.value.code() == grpc.StatusCode.UNAVAILABLE

        servicer.model.set("w600k_mbf-test")
        serving = threading.Thread(target=runtime.serve)
        serving.start()
        deadline = time.monotonic() + 10
        while check(target) != "SERVING" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert check(target, SERVICE) == "SERVING"
        assert stub.Embed(internal_pb2.EmbedRequest()).model == "w600k_mbf-test"

        metrics = f"http://127.0.0.1:{settings.metrics_port}/metrics"
        with urllib.request.urlopen(metrics, timeout=5) as answer:
            text = answer.read().decode()
        counts = {
            sample.labels["code"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "facesearch_grpc_requests_total"
            and sample.labels["method"] == f"/{SERVICE}/Embed"
        }
        assert counts == {"UNAVAILABLE": 1.0, "OK": 1.0}

        runtime.stop()
        serving.join(10)
    assert not serving.is_alive()
    assert check(target, timeout_s=0.5) == "UNREACHABLE"  # drained and closed
