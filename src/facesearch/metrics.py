"""Every Prometheus metric of facesearch: its name, type, labels and meaning, in one place.

Code records through the small objects below, never by creating metrics of its own, so the
dashboards and alert rules in deploy/ can be written against this file alone. Each object
takes a registry: the process-wide default in a service, a fresh one in a test.
"""

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

# Seconds: from a few milliseconds (a small photo) to a minute (a stuck dependency).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StreamMetrics:
    """A Kafka consume-process-produce loop (``streaming.StreamWorker``), by topic."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.consumed = Counter(
            "facesearch_messages_consumed_total",
            "Records a consumer finished with: processed, or dead-lettered.",
            ["topic"],
            registry=registry,
        )
        self.produced = Counter(
            "facesearch_messages_produced_total",
            "Records produced and acknowledged by the broker.",
            ["topic"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "facesearch_messages_dead_lettered_total",
            "Poison records sent to the dead-letter topic, by input topic and error code.",
            ["topic", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            "facesearch_handler_retries_total",
            "Retries of a handler after a transient error.",
            ["topic"],
            registry=registry,
        )
        self.pauses = Counter(
            "facesearch_partition_pauses_total",
            "Times a partition was paused after its retries ran out.",
            ["topic"],
            registry=registry,
        )
        self.processing_seconds = Histogram(
            "facesearch_processing_seconds",
            "Time to handle one record, retries included.",
            ["topic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
