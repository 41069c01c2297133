"""The local stack against the embedded mode, on the same images in the same run, and Search
latency through the gateway with a 10,000-face gallery.

1. Embedded: ``Indexer.run`` from files into a fresh embedded Qdrant (bench/throughput.py's
   pipeline), in this process.
2. Stack: ``facesearch stack up`` in a fresh data folder (broker and four services as
   processes, on free ports), then the images sent to the gateway's IndexImages in batches of
   32, timed until the search service has consumed every one of them (its /metrics counter).
   Broker, services and this client share the machine's cores.
3. Gallery: EmbeddingsEvents with random unit vectors are produced onto the embeddings topic
   until the index holds ``--gallery`` faces (the search service stores them like any other;
   random vectors cost Qdrant the same as real ones), then ``--queries`` Search calls with the
   images above as queries (each its own detection + embedding + vector search), one at a
   time: p50 / p99 wall time per call.

    .venv/bin/python bench/stack.py [--data ../shared/data/faces/lfw-devtest] [--limit N]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from kafka import KafkaProducer

from common import DEFAULT_DATA, lfw_images
from facesearch.codec import events as event_codec
from facesearch.devstack.broker import free_port
from facesearch.devstack.stack import SERVICES, Stack
from facesearch.metrics import scrape
from facesearch.models import FaceModels
from facesearch.proto.v1 import api_pb2, events_pb2
from facesearch.records import Filters
from facesearch.rpc.client import GatewayClient, IndexItem
from facesearch.settings import CoreSettings
from throughput import run_pipeline

BATCH = 32
FACES_PER_EVENT = 50


def stack_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACESEARCH_", "QDRANT_"))}
    env["FACESEARCH_HOME"] = str(home)
    for name in SERVICES:
        env[f"FACESEARCH_{name.upper()}_GRPC_PORT"] = str(free_port())
        env[f"FACESEARCH_{name.upper()}_METRICS_PORT"] = str(free_port())
    return env


def consumed(metrics_port: int, topic: str) -> float:
    return scrape(metrics_port, "facesearch_messages_consumed_total", topic=topic)


def server_ms(ports: dict[str, int], calls: dict[str, str]) -> str:
    """Mean server-side time of each internal call, from each service's own histogram."""
    parts = []
    for service, method in calls.items():
        total = scrape(ports[service], "facesearch_grpc_request_seconds_sum", method=method)
        count = scrape(ports[service], "facesearch_grpc_request_seconds_count", method=method)
        parts.append(f"{method.rsplit('/', 1)[1]} {1000 * total / max(count, 1):.1f} ms")
    return ", ".join(parts)


def wait_consumed(port: int, topic: str, count: float, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while consumed(port, topic) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the search service consumed fewer than {count} in {timeout} s")
        time.sleep(0.25)


def index_through(client: GatewayClient, paths: list[Path], search_port: int) -> float:
    """Images per second from the first IndexImages call to the last image stored."""
    before = consumed(search_port, "facesearch.embeddings.v1")
    start = time.perf_counter()
    sent = 0
    for i in range(0, len(paths), BATCH):
        items = [IndexItem(p.read_bytes(), str(p)) for p in paths[i : i + BATCH]]
        results = client.index(items)
        refused = [r for r in results if not isinstance(r, str)]
        if refused:
            raise SystemExit(f"the gateway refused {len(refused)} images, first: {refused[0]}")
        sent += len(results)
    wait_consumed(search_port, "facesearch.embeddings.v1", before + sent)
    return sent / (time.perf_counter() - start)


def fill_gallery(bootstrap: str, client: GatewayClient, model: str, target: int) -> int:
    """Random unit vectors through the embeddings topic until the index holds ``target``."""
    have = client.stats().faces
    rng = np.random.default_rng(0)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for n in range(max(0, target - have) // FACES_PER_EVENT + 1):
        vectors = rng.standard_normal((FACES_PER_EVENT, 512)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        event = events_pb2.EmbeddingsEvent(
            image_id=f"{n:064x}",
            model=model,
            width=1000,
            height=1000,
            submitted_at=event_codec.now(),
        )
        event.meta.CopyFrom(api_pb2.ImageMeta(source_uri=f"synthetic:{n}", collection="bench"))
        for i, vector in enumerate(vectors):
            event.faces.add(face_index=i, box=api_pb2.Box(x2=10, y2=10), vector=vector.tolist())
        producer.send(
            "facesearch.embeddings.v1", key=event.image_id.encode(), value=event.SerializeToString()
        )
    producer.flush()
    producer.close()
    deadline = time.monotonic() + 600
    while (faces := client.stats().faces) < target and time.monotonic() < deadline:
        time.sleep(0.5)
    return faces


def search_latency(client: GatewayClient, paths: list[Path]) -> list[float]:
    seconds = []
    for path in paths:
        data = path.read_bytes()
        start = time.perf_counter()
        client.search(data, 10, None, Filters())
        seconds.append(time.perf_counter() - start)
    return seconds


def time_searches(stack: Stack, client: GatewayClient, queries: list[Path], faces: int) -> None:
    """Print Search's wall time per call (after 5 warm-up calls) and each service's mean
    server-side time of its part."""
    search_latency(client, queries[:5])
    seconds = np.array(search_latency(client, queries)) * 1000
    p50, p99 = np.percentile(seconds, [50, 99])
    print(
        f"Search             p50 {p50:.1f} ms, p99 {p99:.1f} ms, mean "
        f"{seconds.mean():.1f} ms ({len(queries)} queries, {faces} faces)"
    )
    metrics_ports = {s.name: s.metrics_port or 0 for s in stack.status()}
    calls = {
        "detector": "/facesearch.v1.Detector/Detect",
        "embedder": "/facesearch.v1.Embedder/Embed",
        "search": "/facesearch.v1.SearchIndex/SearchVectors",
    }
    print(f"server side means  {server_ms(metrics_ports, calls)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "lfw-devtest")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    parser.add_argument("--gallery", type=int, default=10_000, help="faces in the index")
    parser.add_argument("--queries", type=int, default=200, help="Search calls to time")
    args = parser.parse_args()
    paths = lfw_images(args.data)[: args.limit or None]
    settings = CoreSettings.from_env()
    models = FaceModels(settings.models)
    embedded, faces = run_pipeline(models, settings, paths)
    print(f"embedded           {embedded:.1f} images/s ({len(paths)} images, {faces} faces)")
    model = models.model_id
    del models  # the stack's processes get the cores and memory from here on
    with tempfile.TemporaryDirectory(prefix="facesearch-bench-stack-") as tmp:
        home = Path(tmp)
        env = stack_env(home)
        stack = Stack(home, env=env, kafka_port=free_port(), controller_port=free_port())
        start = time.perf_counter()
        stack.up()
        print(f"stack up           {time.perf_counter() - start:.1f} s")
        try:
            ports = {s.name: s for s in stack.status()}
            with GatewayClient(ports["gateway"].address, timeout_s=120) as client:
                search_port = ports["search"].metrics_port
                assert search_port is not None, "the search service is not running"
                rate = index_through(client, paths, search_port)
                print(f"local stack        {rate:.1f} images/s")
                print(f"ratio              {rate / embedded:.1%} of embedded")
                bootstrap = f"127.0.0.1:{stack.kafka_port}"
                gallery = fill_gallery(bootstrap, client, model, args.gallery)
                time_searches(stack, client, paths[: args.queries], gallery)
        finally:
            stack.down()


if __name__ == "__main__":
    main()
