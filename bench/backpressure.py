"""Backpressure at the embedder: faces arrive faster than one embedder embeds them; the lag of
its consumer group grows and nothing breaks; a second replica in the same group (the faces
topic has several partitions) takes half the partitions and the lag drains faster.

1. The detector's work is done first, in this process: the FacesEvents of ``--images`` LFW
   photos (``handlers.detector_handler``, as the detector service makes them).
2. A broker on free ports; a faces topic of ``--partitions`` partitions holding every event at
   once: a detector far ahead of the embedder, the lag at its largest.
3. One embedder process (``python -m facesearch_services.embedder``, one model thread,
   pinned to one core with ``taskset``) drains it: the lag is sampled every second from the
   group's committed offsets; faces per second = faces embedded / drain time.
4. The same events again under a new consumer group with two embedder processes, each on its
   own core: the same figures. Every event must come out once per group (embeddings topic end
   offset), and nothing may be dead-lettered.

On this machine (2 cores) the two replicas have a core each and the broker shares them.

    .venv/bin/python bench/backpressure.py [--data ../shared/data/faces/lfw-devtest]
        [--images 1200] [--partitions 4]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition

from common import DEFAULT_DATA, lfw_images
from facesearch.codec import events as event_codec
from facesearch.devstack.broker import Broker, free_port
from facesearch.ids import image_id
from facesearch.models import FaceModels
from facesearch.proto.v1 import api_pb2, events_pb2
from facesearch.rpc.health import check
from facesearch.settings import MAX_MESSAGE_BYTES, CoreSettings
from facesearch.stream.handlers import detector_handler
from facesearch.stream.worker import dlq_topic

FACES, EMBEDDINGS = "bench.faces", "bench.embeddings"
Message = tuple[bytes | None, bytes]


def faces_events(paths: list[Path], settings: CoreSettings) -> tuple[list[Message], int]:
    """The detector's output for each photo, and the number of faces in them."""
    models = FaceModels(settings.models)
    detect = detector_handler(models, settings)
    events: list[Message] = []
    for path in paths:
        data = path.read_bytes()
        meta = api_pb2.ImageMeta(source_uri=str(path), path=str(path))
        event = events_pb2.ImageEvent(image_id=image_id(data), data=data, meta=meta)
        event.submitted_at.CopyFrom(event_codec.now())
        events.extend(detect(None, event.SerializeToString()))
    faces = sum(len(events_pb2.FacesEvent.FromString(v).faces) for _, v in events)
    return events, faces


def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values()) if partitions else 0
    finally:
        consumer.close()


def lag(watcher: KafkaConsumer, total: int) -> int:
    """Events not yet committed by the group ``watcher`` reads the offsets of."""
    parts = [TopicPartition(FACES, p) for p in watcher.partitions_for_topic(FACES) or ()]
    done: int = sum(watcher.committed(p) or 0 for p in parts)
    return total - done


def start_embedder(
    env: dict[str, str], core: int, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        **env,
        "FACESEARCH_EMBEDDER_GRPC_PORT": str(grpc_port),
        "FACESEARCH_EMBEDDER_METRICS_PORT": str(metrics_port),
    }
    command = ["taskset", "-c", str(core), sys.executable, "-m", "facesearch_services.embedder"]
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, f"127.0.0.1:{grpc_port}"


def drain(
    bootstrap: str, env: dict[str, str], group: str, replicas: int, total: int, home: Path
) -> None:
    """Start ``replicas`` embedders in ``group`` and time them through every event."""
    env = {**env, "FACESEARCH_EMBEDDER_GROUP": group}
    before = end_offsets(bootstrap, EMBEDDINGS)
    started = [start_embedder(env, core, home / f"{group}-{core}.log") for core in range(replicas)]
    # Reads the group's committed offsets; never joins it.
    watcher = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + 300
        while not all(check(target) == "SERVING" for _, target in started):
            if time.monotonic() > deadline:
                raise SystemExit("the embedders did not become SERVING in 300 s")
            time.sleep(0.2)
        start = time.perf_counter()
        samples = []
        while (left := lag(watcher, total)) > 0:
            samples.append(left)
            if time.perf_counter() - start > 3600:
                raise SystemExit(f"{group}: {left} events still not embedded after an hour")
            time.sleep(1.0)
        seconds = time.perf_counter() - start
    finally:
        watcher.close(autocommit=False)
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            process.wait(60)
    produced = end_offsets(bootstrap, EMBEDDINGS) - before
    dead = end_offsets(bootstrap, dlq_topic(FACES))
    curve = " ".join(str(s) for s in samples[:: max(1, len(samples) // 12)])
    print(
        f"{replicas} embedder{'s' if replicas > 1 else ' '}  {total / seconds:6.1f} events/s, "
        f"drained {total} events in {seconds:.1f} s; lag every ~{len(samples) // 12 or 1} s: "
        f"{curve} 0; outputs {produced} (of {total}), dead letters {dead}"
    )
    if produced < total or dead:
        raise SystemExit("events were lost or dead-lettered")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "lfw-devtest")
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    settings = CoreSettings.from_env()
    events, faces = faces_events(lfw_images(args.data)[: args.images], settings)
    print(f"faces events       {len(events)} ({faces} faces), made by the detector in-process")
    with tempfile.TemporaryDirectory(prefix="facesearch-bench-backpressure-") as tmp:
        home = Path(tmp)
        with Broker(home / "kafka", port=free_port(), controller_port=free_port()) as broker:
            bootstrap = broker.bootstrap
            admin = KafkaAdminClient(bootstrap_servers=bootstrap)
            topics = (FACES, EMBEDDINGS, dlq_topic(FACES))
            admin.create_topics(
                [NewTopic(t, num_partitions=args.partitions, replication_factor=1) for t in topics]
            )
            admin.close()
            producer = KafkaProducer(
                bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_MESSAGE_BYTES
            )
            for key, value in events:
                producer.send(FACES, key=key, value=value)
            producer.flush()
            producer.close()
            env = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
            env.update(
                {
                    "FACESEARCH_HOME": str(home),
                    "FACESEARCH_KAFKA_BOOTSTRAP": bootstrap,
                    "FACESEARCH_TOPIC_FACES": FACES,
                    "FACESEARCH_TOPIC_EMBEDDINGS": EMBEDDINGS,
                    "FACESEARCH_THREADS": "1",
                }
            )
            for replicas in (1, 2):
                drain(bootstrap, env, f"bench-embedder-{replicas}", replicas, len(events), home)


if __name__ == "__main__":
    main()
