"""Every Prometheus metric of facesearch: its name, type, labels and meaning, in one place.

Code records through the small objects below, never by creating metrics of its own, so the
dashboards and alert rules in deploy/ can be written against this file alone. Each object
takes a registry: the process-wide default in a service, a fresh one in a test.
"""

import urllib.request

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

# Seconds: from a few milliseconds (a small photo) to a minute (a stuck dependency).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StreamMetrics:
    """A Kafka consume-process-produce loop (``worker.StreamWorker``), by topic."""

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
        self.consumer_lag = Gauge(
            "facesearch_consumer_lag",
            "Records in a partition not yet consumed by this consumer, by topic and partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.consumer_restarts = Counter(
            "facesearch_consumer_restarts_total",
            "Consumers replaced by a new one because records waited in their partitions that "
            "their fetches did not bring (a client fault; nothing is lost: the new one starts "
            "from the committed offsets).",
            ["topic"],
            registry=registry,
        )
        self.stalled_partitions = Gauge(
            "facesearch_stalled_partitions",
            "Partitions whose records keep failing with a transient error (a dependency such as "
            "Qdrant or the broker is down): paused, or retrying since their last pause; 0 once "
            "a batch of each succeeds.",
            ["topic"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "facesearch_batch_size",
            "Records handled together in one step (the embedder's micro-batches), by input topic.",
            ["topic"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=registry,
        )
        self.processing_seconds = Histogram(
            "facesearch_processing_seconds",
            "Time to handle one batch of records (one record unless batched), retries included.",
            ["topic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class RpcMetrics:
    """Every gRPC server: requests by method and status code, and their latency."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(
            "facesearch_grpc_requests_total",
            "gRPC requests handled, by full method name and status code (OK, INVALID_ARGUMENT...).",
            ["method", "code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "facesearch_grpc_request_seconds",
            "Time to handle one gRPC request, by full method name.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class AccessMetrics:
    """The gateway's API keys: calls refused, by method and reason."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.refused = Counter(
            "facesearch_gateway_refused_total",
            "Calls the gateway refused for their key, by method, reason (no_key, "
            "malformed_key, unknown_key, revoked_key, scope, collection, quota_rps, "
            "quota_searches_per_day) and key id (empty when no key was proven).",
            ["method", "reason", "key_id"],
            registry=registry,
        )
        self.quota_used = Gauge(
            "facesearch_gateway_quota_used_ratio",
            "The share of a key's quota in use at its last call through this replica (1: used "
            "up; above 1: overdrawn by calls other replicas let pass), by key id and quota "
            "(rps, searches_per_day).",
            ["key_id", "quota"],
            registry=registry,
        )
        self.audit_records = Counter(
            "facesearch_audit_records_total",
            "Audit records of the gateway's calls, by outcome: written (acknowledged by the "
            "broker) or lost (not queued or not sent; each is logged).",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("written", "lost"):  # both series from the start, at 0
            self.audit_records.labels(outcome)
        self.key_reload_failures = Counter(
            "facesearch_gateway_key_reload_failures_total",
            "Times the keys file changed into something unreadable (the keys read before "
            "stay in force).",
            registry=registry,
        )


class WorkMetrics:
    """What the pipeline's stages do with what they consume."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.faces_per_image = Histogram(
            "facesearch_faces_per_image",
            "Faces found in one image by the detector.",
            buckets=(0, 1, 2, 3, 5, 10, 20, 50, 100),
            registry=registry,
        )
        self.faces_unindexed = Counter(
            "facesearch_faces_unindexed_total",
            "Faces the detector found but the quality gate kept out, by reason (too_small, "
            "blurred, extreme_pose, low_confidence).",
            ["reason"],
            registry=registry,
        )
        self.optout_faces = Counter(
            "facesearch_optout_faces_total",
            "Faces that matched an opt-out, by event: kept_out (not indexed), erased (indexed "
            "before the opt-out), withheld (a query face given no results).",
            ["event"],
            registry=registry,
        )
        self.inference_seconds = Histogram(
            "facesearch_inference_seconds",
            "Time of a stage's model work: detect = decode, detect and align one image; "
            "embed = one model call on a batch of crops.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.qdrant_seconds = Histogram(
            "facesearch_qdrant_seconds",
            "Time of one Qdrant operation, by operation (upsert, query, delete, stats, get).",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.images_submitted = Counter(
            "facesearch_images_submitted_total",
            "Images the gateway accepted (queued) or refused, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.indexing_latency = Histogram(
            "facesearch_indexing_latency_seconds",
            "End to end: from the gateway (or producer) accepting an image to its faces being "
            "stored in Qdrant, observed by the search service.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
            registry=registry,
        )
        self.events_erased = Counter(
            "facesearch_events_erased_total",
            "EmbeddingsEvents the search service did not keep because a Delete's tombstone "
            "covers them (submitted at or before a Delete of their image id, label or source), "
            "by the selector's field.",
            ["field"],
            registry=registry,
        )
        self.search_matches = Histogram(
            "facesearch_search_matches",
            "Matches returned for one query face of a Search call, observed by the gateway.",
            buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=registry,
        )
        self.search_decisions = Counter(
            "facesearch_search_decisions_total",
            "Matches a Search call answered, by the decision taken for the gallery searched "
            "(match, possible, no_match), observed by the gateway.",
            ["decision"],
            registry=registry,
        )
        self.search_gallery_faces = Histogram(
            "facesearch_search_gallery_faces",
            "Faces one Search call compared its query with: the gallery its decisions were "
            "calibrated for, observed by the gateway.",
            buckets=(10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9),
            registry=registry,
        )


def scrape(port: int, name: str, host: str = "127.0.0.1", **labels: str) -> float:
    """A metric a process serves on ``host:port``: the sum of its samples that have ``labels``
    (among others; 0 when none has): what the tests and benchmarks read of a running
    service."""
    samples = _samples(port, host, name)
    return sum(v for found, v in samples if all(found.get(k) == w for k, w in labels.items()))


def _samples(port: int, host: str, name: str) -> list[tuple[dict[str, str], float]]:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode("utf-8")
    return [
        (sample.labels, float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]
