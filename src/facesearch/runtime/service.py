"""One service process: its gRPC server (with grpc.health.v1, and reflection for the gateway),
its Prometheus endpoint, and the shutdown of docs/architecture.md. Each ``services/<name>/main.py``
builds its servicer and stream worker and hands them to ``ServiceRuntime``.

Life of a process: ``start()`` serves health as NOT_SERVING while models and clients load;
``serve()`` turns it SERVING and runs the Kafka loop (if any) in the main thread until SIGTERM
or SIGINT (the loop's own health, ``INGEST_HEALTH``, is NOT_SERVING while its records keep
failing on a dependency); then health says NOT_SERVING, the loop finishes its record, flushes
and commits, and the gRPC server finishes calls in flight within the drain time. A stream loop
that fails ends the process with status 1, for the orchestrator to restart it.
"""

import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from facesearch.errors import ConfigError
from facesearch.metrics import RpcMetrics, StreamMetrics
from facesearch.rpc.edge import MetricsInterceptor, message_options
from facesearch.rpc.settings import KafkaSettings, ServerSettings
from facesearch.rpc.tls import server_credentials
from facesearch.stream.worker import StreamWorker

log = logging.getLogger(__name__)

GRPC_THREADS = 8
WAIT_SLICE_S = 0.2
# The health of a service's Kafka loop, beside its gRPC services': NOT_SERVING while records
# keep failing on a dependency (Qdrant, the broker), so the process can still answer queries.
INGEST_HEALTH = "facesearch.ingest"


class ServiceRuntime:
    """The process around one service's servicer and stream loop (see the module's text)."""

    def __init__(
        self,
        settings: ServerSettings,
        services: list[str],
        *,
        reflection: bool = False,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
        metrics: RpcMetrics | None = None,
    ) -> None:
        """``interceptors`` run inside the metrics one, which so counts what they refuse;
        ``metrics`` default to the process's registry (one runtime per process): a test
        running several runtimes gives each its own."""
        self.settings = settings
        self.services = services  # full names, e.g. "facesearch.v1.Detector"
        self.server = grpc.server(
            ThreadPoolExecutor(GRPC_THREADS, thread_name_prefix=f"{settings.name}-grpc"),
            interceptors=[MetricsInterceptor(metrics or RpcMetrics()), *interceptors],
            options=message_options(settings.max_message_bytes),
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._reflection = reflection
        self._stopping = False  # a plain bool: safe to set from a signal handler
        self._signal = ""  # the name of the stop signal received, logged once it is handled
        self._worker: StreamWorker | None = None

    def start(self) -> None:
        """Listen (gRPC and /metrics) with every service NOT_SERVING."""
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._reflection:
            names = [*self.services, health.SERVICE_NAME, reflection.SERVICE_NAME]
            reflection.enable_server_reflection(names, self.server)
        address = self.settings.grpc_address
        if self._listen(address) == 0:
            raise ConfigError(f"{self.settings.name}: cannot listen for gRPC on {address}")
        try:
            start_http_server(self.settings.metrics_port, addr=self.settings.host)
        except OSError as exc:
            raise ConfigError(
                f"{self.settings.name}: cannot serve metrics on port "
                f"{self.settings.metrics_port}: {exc.strerror}"
            ) from exc
        self.server.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info(
            "%s listening: gRPC %s (%s), metrics :%d",
            *(self.settings.name, address, self._transport(), self.settings.metrics_port),
        )

    def _listen(self, address: str) -> int:
        """The port bound at ``address``, with TLS when the settings give a certificate."""
        tls = self.settings.tls
        if tls is None:
            return self.server.add_insecure_port(address)
        try:
            return self.server.add_secure_port(address, server_credentials(tls))
        except RuntimeError:  # gRPC's only word for a port it could not bind
            return 0

    def _transport(self) -> str:
        tls = self.settings.tls
        if tls is None:
            return "plaintext"
        return "TLS, client certificates required" if tls.client_ca else "TLS"

    def serve(self, worker: StreamWorker | None = None) -> int:
        """SERVING until a stop signal (or the worker fails); returns the exit status."""
        status = 0
        self._worker = worker
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if worker is not None:
            worker.on_stalled = self._ingest_stalled
            self.health.set(INGEST_HEALTH, health_pb2.HealthCheckResponse.SERVING)
        log.info("%s serving", self.settings.name)
        try:
            self._run(worker)
        except Exception:
            log.exception("%s: the stream loop failed; exiting for a restart", self.settings.name)
            status = 1
        if self._signal:
            log.info("%s: %s received, draining", self.settings.name, self._signal)
        self.health.enter_graceful_shutdown()
        if worker is not None:
            worker.stop()
        self.server.stop(grace=self.settings.drain_s).wait()
        log.info("%s stopped", self.settings.name)
        return status

    def _run(self, worker: StreamWorker | None) -> None:
        if self._stopping:  # the signal came while the models were loading
            return
        if worker is not None:
            # run() returns once stop() was called (from the signal handler) and it committed.
            worker.run()
            return
        while not self._stopping:
            time.sleep(WAIT_SLICE_S)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (before ``serve()``: a dependency's backoff); False as soon
        as a stop signal came."""
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(WAIT_SLICE_S, max(0.0, deadline - time.monotonic())))
        return not self._stopping

    def stop(self) -> None:
        """Begin the shutdown: ``serve()`` drains and returns. Safe from a signal handler."""
        self._stopping = True
        if self._worker is not None:
            self._worker.stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # No logging here: a handler that writes to stderr while the interrupted code is
        # writing to it can raise "reentrant call" from the middle of that code.
        self._signal = signal.Signals(signum).name
        self.stop()

    def _ingest_stalled(self, stalled: bool) -> None:
        serving = health_pb2.HealthCheckResponse
        self.health.set(INGEST_HEALTH, serving.NOT_SERVING if stalled else serving.SERVING)
        log.warning(
            "%s: ingest %s", self.settings.name, "stalled on a dependency" if stalled else "resumed"
        )

    def _set_health(self, status: int) -> None:
        for name in ["", *self.services]:
            self.health.set(name, status)


def run_service(main: Callable[[], int]) -> None:
    """The body of a service's ``main()``: logging, then exit with its status; a missing or
    bad setting is one line naming the variable, and status 2."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        sys.exit(main())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def stream_worker(
    server: ServerSettings,
    kafka: KafkaSettings,
    input_topic: str,
    output_topic: str,
    **options: Any,
) -> StreamWorker:
    """The service's Kafka loop: its consumer group, the broker's message size, and its
    metrics in the process's registry; ``options`` are StreamWorker's (handler or
    batch_handler, max_batch...)."""
    return StreamWorker(
        kafka.bootstrap,
        input_topic,
        server.group_id,
        output_topic,
        metrics=StreamMetrics(),
        max_message_bytes=kafka.max_message_bytes,
        **options,
    )
