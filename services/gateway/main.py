"""The gateway: the public gRPC API (with health and reflection) in front of the pipeline.
Wiring only."""

import logging
import socket
from contextlib import ExitStack

import grpc
from kafka import KafkaProducer

from facesearch.access import KeyTable
from facesearch.calibration import calibration_for
from facesearch.metrics import AccessMetrics, StreamMetrics, WorkMetrics
from facesearch.models import file_model_id, locate_models
from facesearch.proto.v1 import api_pb2_grpc
from facesearch.proto.v1 import internal_pb2_grpc as internal
from facesearch.quotas import QuotaBook
from facesearch.rpc.edge import message_options
from facesearch.rpc.settings import GatewaySettings
from facesearch.rpc.tls import open_channel
from facesearch.runtime.service import ServiceRuntime, run_service
from facesearch.searching import Found
from facesearch.stream.worker import CLOSE_TIMEOUT_S, dlq_topic

from .access import Gate
from .audit import AuditTrail
from .backends import Backends
from .failures import DeadLetterWatcher, RecentIds
from .servicer import SERVICE_NAME, GatewayServicer
from .usage import UsageSync

logger = logging.getLogger(__name__)
REMEMBERED_IMAGES = 200_000  # queued and failed ids kept for GetImage, each


def connect(settings: GatewaySettings, stack: ExitStack) -> Backends:
    kafka = settings.kafka
    producer = KafkaProducer(
        bootstrap_servers=kafka.bootstrap,
        acks="all",
        max_request_size=kafka.max_message_bytes,
        linger_ms=5,
        # send() waits this long for the topic's metadata or buffer room (60 s by default):
        # with the broker down, no longer than IndexImages waits for acknowledgements.
        max_block_ms=int(settings.deadline_s * 1000),
    )
    # Bounded, as the stream workers' close: the stack SIGKILLs a gateway that drains too long.
    stack.callback(producer.close, timeout=CLOSE_TIMEOUT_S)

    # Round robin: a service given as several addresses (search replicas), or as a DNS name
    # with several addresses, has its calls spread over all of them, not pinned to one.
    options = [
        *message_options(settings.server.max_message_bytes),
        ("grpc.lb_policy_name", "round_robin"),
    ]

    def channel(addresses: str) -> grpc.Channel:
        target = grpc_target(addresses)
        return stack.enter_context(open_channel(target, settings.internal_tls, options))

    failures = RecentIds(REMEMBERED_IMAGES)
    topics = [kafka.images_topic, kafka.faces_topic, kafka.embeddings_topic]
    watcher = DeadLetterWatcher(kafka.bootstrap, [dlq_topic(t) for t in topics], failures)
    watcher.start()
    stack.callback(watcher.stop)
    produced = StreamMetrics().produced.labels(kafka.images_topic)
    work = WorkMetrics()
    submitted = work.images_submitted

    def record(outcome: str) -> None:
        submitted.labels(outcome).inc()
        if outcome == "queued":
            produced.inc()

    return Backends(
        producer=producer,
        detector=internal.DetectorStub(channel(settings.detector)),
        embedder=internal.EmbedderStub(channel(settings.embedder)),
        search=internal.SearchIndexStub(channel(settings.search)),
        failures=failures,
        queued=RecentIds(REMEMBERED_IMAGES),
        record_queued=record,
        record_search=lambda found: record_search(work, found),
    )


def record_search(work: WorkMetrics, found: Found) -> None:
    """A Search's answer in the metrics: the gallery, and per query face its matches and
    their decisions."""
    work.search_gallery_faces.observe(found.decisions.gallery_faces)
    for face in found.faces:
        work.search_matches.observe(len(face.matches))
        for match in face.matches:
            work.search_decisions.labels(match.decision).inc()


def grpc_target(addresses: str) -> str:
    """The gRPC target of ``HOST:PORT``, or of a comma-separated list of IPv4 ``HOST:PORT``s
    (gRPC's ``ipv4:`` scheme)."""
    parts = [part.strip() for part in addresses.split(",") if part.strip()]
    return parts[0] if len(parts) == 1 else "ipv4:" + ",".join(parts)


def open_gate(settings: GatewaySettings, metrics: AccessMetrics, trail: AuditTrail) -> Gate:
    """The key checks: the keys file read now (a malformed one stops the start), or none;
    the audit records go to ``trail``."""
    source = f"gateway/{socket.gethostname()}"
    if settings.keys_file is None:
        logger.warning("FACESEARCH_GATEWAY_AUTH=off: every caller may call every method")
        return Gate(None, metrics, trail.write, source)
    limits = settings.default_limits
    table = KeyTable(settings.keys_file, metrics.key_reload_failures.inc)
    live = [k for k in table.keys().values() if not k.revoked]
    logger.info("API keys from %s: %d in force", settings.keys_file, len(live))
    if not live:
        logger.warning("no API key in force yet: every call is refused until one is made there")
    return Gate(table, metrics, trail.write, source, QuotaBook(), limits)


def serve() -> int:
    settings = GatewaySettings.from_env()
    # Read once, here: a bad FACESEARCH_CALIBRATION file, or one made for another model than
    # the embedder's (the same model settings), stops the start as a bad setting does.
    path = settings.core.calibration
    model = None if path is None else file_model_id(locate_models(settings.core.models).recognizer)
    calibration = calibration_for(path, model)
    logger.info("decisions from %s (model %s)", calibration.source, calibration.model)
    metrics = AccessMetrics()
    trail = AuditTrail(settings.kafka.audit_topic, metrics)
    gate = open_gate(settings, metrics, trail)
    runtime = ServiceRuntime(
        settings.server,
        [SERVICE_NAME],
        reflection=True,
        interceptors=[gate.interceptor(SERVICE_NAME)],
    )
    servicer = GatewayServicer(settings, calibration, gate)
    api_pb2_grpc.add_FaceSearchServicer_to_server(servicer, runtime.server)
    runtime.start()
    with ExitStack() as stack:
        backends = connect(settings, stack)
        trail.connect(backends.producer)
        stack.callback(trail.stop)  # before the producer closes: the records queued go out
        kafka = settings.kafka
        usage = UsageSync(kafka.bootstrap, kafka.usage_topic, gate.quotas, gate.limits_of)
        usage.start(backends.producer)
        stack.callback(usage.stop)
        servicer.backends.set(backends)
        return runtime.serve()


def main() -> None:
    run_service(serve)
