"""A gateway servicer on stand-in backends, shared by the unit tests of the gateway (importable
because pyproject puts tests/unit on pytest's pythonpath)."""

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from facesearch.calibration import LFW, Calibration
from facesearch.metrics import AccessMetrics
from facesearch.rpc.settings import GatewaySettings
from facesearch_services.gateway.access import Gate
from facesearch_services.gateway.backends import Backends
from facesearch_services.gateway.failures import RecentIds
from facesearch_services.gateway.servicer import GatewayServicer

GATEWAY = {
    "FACESEARCH_KAFKA_BOOTSTRAP": "kafka:9092",
    "FACESEARCH_GATEWAY_DETECTOR": "detector:50052",
    "FACESEARCH_GATEWAY_EMBEDDER": "embedder:50053",
    "FACESEARCH_GATEWAY_SEARCH": "search:50054",
    "FACESEARCH_GATEWAY_AUTH": "off",  # the key checks are tested through a real server
}


def fake_backends(
    *,
    producer: Any = None,
    detector: Any = None,
    embedder: Any = None,
    search: Any = None,
    record_queued: Callable[[str], None] | None = None,
) -> Backends:
    """Backends made of whatever stand-ins a test passes (None where it needs none)."""
    return Backends(
        producer=producer,
        detector=detector,
        embedder=embedder,
        search=search,
        failures=RecentIds(10),
        queued=RecentIds(10),
        record_queued=record_queued or (lambda outcome: None),
        record_search=lambda found: None,
    )


def gateway_servicer(
    backends: Backends,
    env: Mapping[str, str] | None = None,
    calibration: Calibration = LFW,
) -> GatewayServicer:
    """A GatewayServicer with GATEWAY's settings (and ``env``'s), ready on ``backends``."""
    settings = GatewaySettings.from_env({**GATEWAY, **(env or {})})
    servicer = GatewayServicer(
        settings, calibration, Gate(None, AccessMetrics(CollectorRegistry()))
    )
    servicer.backends.set(backends)
    return servicer
