"""The sizing table of docs/operations.md, from the figures measured here and stated assumptions.

    .venv/bin/python bench/sizing.py

Prints a Markdown table for galleries of 10^6, 10^8 and 10^9 faces: Qdrant memory and disk with
float32 vectors and with int8 scalar quantization, shards, nodes and replicas, Kafka partitions,
and detector and embedder replicas for ingesting the whole gallery in about a day. Every input
is a constant below, so a reader can change one and see what follows.
"""

import math

# --- measured on the development machine (2 cores, CPU only, buffalo_s), docs/operations.md ---
FACES_PER_IMAGE = 1.2  # LFW: one face per photo, sometimes more
# One embedder process on one core (one model thread) draining a backlog in micro-batches:
# 1,416 faces in 19.7 s (bench/backpressure.py); a second process on the other core gave 1.77x.
EMBED_FACES_PER_S_PER_CORE = 71.9
DETECT_MS_PER_LFW_IMAGE = 4.0  # Detect, server-side mean, 250x250 JPEG

# --- assumptions ---
REPLICA_CPUS = 2  # each detector and embedder pod: 2 CPUs (its limit), FACESEARCH_THREADS=2
# Real photos (several megapixels) cost far more to decode and resize than 250x250 LFW crops;
# detection itself runs at 640 px either way.
REAL_PHOTO_COST = 10.0
HEADROOM = 0.7  # run replicas at 70% of their measured throughput
DIM = 512
HNSW_M = 16  # Qdrant's default; layer 0 keeps 2*m links of 4 bytes per point
PAYLOAD_BYTES = 400  # image_id, source_uri, label, bbox, scores, times, model (on disk)
PAYLOAD_INDEX_BYTES = 150  # keyword indexes on label, source_uri, collection, image_id (RAM)
QDRANT_OVERHEAD = 1.25  # id tracker, versions, allocator, segment optimisation headroom
DISK_HEADROOM = 1.5  # optimisers rewrite segments next to the old ones; WAL; snapshots apart
REPLICATION = 2  # every shard on two Qdrant nodes (overlays/production)
NODE_RAM_GIB = 64  # Qdrant node size; 75% of it for Qdrant's data, the rest for the page cache
POINTS_PER_SHARD = 20_000_000  # keeps one shard's HNSW build and transfer to minutes
INGEST_SECONDS = 86_400  # load the whole gallery in about a day
MIN_PARTITIONS = 12  # deploy/k8s/base/kafka/topics.yaml
GIB = 1024**3


def replica_rates() -> tuple[float, float]:
    """Faces per second of one embedder replica and images per second of one detector replica."""
    embedder = EMBED_FACES_PER_S_PER_CORE * REPLICA_CPUS * HEADROOM
    detector = 1000 / (DETECT_MS_PER_LFW_IMAGE * REAL_PHOTO_COST) * HEADROOM
    return embedder, detector


def qdrant_bytes(faces: int, int8: bool) -> tuple[float, float]:
    """RAM and disk of one copy of the collection."""
    vector = DIM * 4
    links = 2 * HNSW_M * 4
    in_ram = (DIM if int8 else vector) + links + PAYLOAD_INDEX_BYTES
    on_disk = vector + (DIM if int8 else 0) + links + PAYLOAD_BYTES + PAYLOAD_INDEX_BYTES
    return faces * in_ram * QDRANT_OVERHEAD, faces * on_disk * DISK_HEADROOM


def row(faces: int) -> list[str]:
    embedder_rate, detector_rate = replica_rates()
    faces_per_s = faces / INGEST_SECONDS
    embedders = math.ceil(faces_per_s / embedder_rate)
    detectors = math.ceil(faces_per_s / FACES_PER_IMAGE / detector_rate)
    partitions = max(MIN_PARTITIONS, 2 ** math.ceil(math.log2(2 * max(embedders, detectors))))
    ram32, disk32 = qdrant_bytes(faces, int8=False)
    ram8, disk8 = qdrant_bytes(faces, int8=True)
    shards = math.ceil(faces / POINTS_PER_SHARD)
    usable = NODE_RAM_GIB * 0.75 * GIB
    nodes32 = max(REPLICATION, math.ceil(ram32 * REPLICATION / usable))
    nodes8 = max(REPLICATION, math.ceil(ram8 * REPLICATION / usable))
    return [
        f"10^{round(math.log10(faces))}",
        f"{faces_per_s:,.0f}",
        f"{ram32 / GIB:,.1f} / {disk32 / GIB:,.0f}",
        f"{ram8 / GIB:,.1f} / {disk8 / GIB:,.0f}",
        f"{shards} x {REPLICATION}",
        f"{nodes32} / {nodes8}",
        str(partitions),
        str(detectors),
        str(embedders),
    ]


def main() -> None:
    embedder_rate, detector_rate = replica_rates()
    print(f"embedder replica: {embedder_rate:.0f} faces/s; detector replica: {detector_rate:.0f}")
    print("images/s (real photos), both at 70% of measured, 2 CPUs each\n")
    header = [
        "faces",
        "ingest faces/s (1 day)",
        "Qdrant float32 RAM / disk GiB (1 copy)",
        "Qdrant int8 RAM / disk GiB (1 copy)",
        "shards x replicas",
        f"Qdrant nodes ({NODE_RAM_GIB} GiB) float32 / int8",
        "Kafka partitions",
        "detector replicas",
        "embedder replicas",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for faces in (10**6, 10**8, 10**9):
        print("| " + " | ".join(row(faces)) + " |")


if __name__ == "__main__":
    main()
