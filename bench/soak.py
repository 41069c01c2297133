"""A soak of the local stack: ``--images`` distinct images (the lfw-devtest photos, each round
mirrored, cropped and re-encoded differently so every copy has its own id) sent through the
gateway while another thread calls Search without pause; then Search alone.

Reported: ingest rate; each process's resident memory (the services and the broker) at the
start, its peak and at the end, and a curve of ten samples; Search p50 / p99 during ingest
next to Search p50 / p99 with nothing else running; dead letters (must be 0) and whether the
search service consumed exactly what the gateway queued.

    .venv/bin/python bench/soak.py [--data ../shared/data/faces/lfw-devtest] [--images 20000]
"""

import argparse
import io
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from common import DEFAULT_DATA, lfw_images
from facesearch.devstack.broker import free_port
from facesearch.devstack.stack import SERVICES, Stack
from facesearch.errors import FaceSearchError
from facesearch.metrics import scrape
from facesearch.records import Filters
from facesearch.rpc.client import GatewayClient, IndexItem
from stack import BATCH, stack_env

TOPICS = {
    "detector": "facesearch.images.v1",
    "embedder": "facesearch.faces.v1",
    "search": "facesearch.embeddings.v1",
}
SAMPLE_S = 2.0


def variant(path: Path, round_: int) -> bytes:
    """Round 0: the file's bytes; round r: the photo mirrored on odd rounds, ``r % 7`` pixels
    cropped from each side, re-encoded at quality ``80 + r % 17``: a new image of the same
    face (a new sha256), still 250 x 250 or close."""
    if round_ == 0:
        return path.read_bytes()
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if round_ % 2:
        image = ImageOps.mirror(image)
    crop = round_ % 7
    image = image.crop((crop, crop, image.width - crop, image.height - crop))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80 + round_ % 17)
    return out.getvalue()


def images(paths: list[Path], count: int) -> Iterator[IndexItem]:
    for n in range(count):
        path = paths[n % len(paths)]
        round_ = n // len(paths)
        yield IndexItem(variant(path, round_), f"{path}#{round_}")


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler(threading.Thread):
    """Resident memory of each named process every SAMPLE_S seconds."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.samples: dict[str, list[float]] = {name: [] for name in pids}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for name, pid in self.pids.items():
                self.samples[name].append(rss_mib(pid))
            self.done.wait(SAMPLE_S)

    def report(self) -> None:
        for name, values in self.samples.items():
            curve = " ".join(f"{v:.0f}" for v in values[:: max(1, len(values) // 10)])
            print(
                f"  {name:<9} RSS MiB start {values[0]:.0f}, peak {max(values):.0f}, end "
                f"{values[-1]:.0f}; curve {curve}"
            )


class Searcher(threading.Thread):
    """Search calls one after another with the photos as queries, until told to stop."""

    def __init__(self, client: GatewayClient, paths: list[Path]) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.paths = paths
        self.seconds: list[float] = []
        self.errors: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.done.is_set():
            self.seconds.append(self.one(self.paths[n % len(self.paths)]))
            n += 7

    def one(self, path: Path) -> float:
        data = path.read_bytes()
        start = time.perf_counter()
        try:
            self.client.search(data, 10, None, Filters())
        except FaceSearchError as exc:
            self.errors.append(str(exc))
        return time.perf_counter() - start


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    p50, p99 = np.percentile(ms, [50, 99])
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(ms)} calls)"


def consumed(port: int, topic: str) -> float:
    return scrape(port, "facesearch_messages_consumed_total", topic=topic)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "lfw-devtest")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--quiet-searches", type=int, default=300)
    args = parser.parse_args()
    paths = lfw_images(args.data)
    with tempfile.TemporaryDirectory(prefix="facesearch-bench-soak-") as tmp:
        home = Path(tmp)
        stack = Stack(
            home, env=stack_env(home), kafka_port=free_port(), controller_port=free_port()
        )
        stack.up()
        try:
            status = {s.name: s for s in stack.status()}
            pids = {name: status[name].pid or 0 for name in ("kafka", *SERVICES)}
            ports = {name: status[name].metrics_port or 0 for name in SERVICES}
            sampler = Sampler(pids)
            sampler.start()
            with GatewayClient(status["gateway"].address, timeout_s=120) as client:
                searcher = Searcher(client, paths)
                searcher.start()
                start = time.perf_counter()
                sent = 0
                batch: list[IndexItem] = []
                for item in images(paths, args.images):
                    batch.append(item)
                    if len(batch) == BATCH:
                        sent += sum(isinstance(r, str) for r in client.index(batch))
                        batch = []
                if batch:
                    sent += sum(isinstance(r, str) for r in client.index(batch))
                while consumed(ports["detector"], TOPICS["detector"]) < sent:
                    time.sleep(0.5)
                events = scrape(
                    ports["detector"],
                    "facesearch_messages_produced_total",
                    topic=TOPICS["embedder"],
                )
                while consumed(ports["search"], TOPICS["search"]) < events:
                    time.sleep(0.5)
                seconds = time.perf_counter() - start
                searcher.done.set()
                searcher.join()
                during = searcher.seconds
                quiet = [searcher.one(paths[n % len(paths)]) for n in range(args.quiet_searches)]
            sampler.done.set()
            sampler.join()
            dead = sum(
                scrape(
                    ports[name],
                    "facesearch_messages_dead_lettered_total",
                    topic=topic,
                    reason=reason,
                )
                for name, topic in TOPICS.items()
                for reason in ("bad_image", "bad_message", "too_large", "not_found")
            )
            print(
                f"ingest             {sent} images in {seconds:.0f} s = {sent / seconds:.1f} img/s"
            )
            print(f"Search in ingest   {percentiles(during)}; errors {len(searcher.errors)}")
            print(f"Search alone       {percentiles(quiet)}")
            stored = consumed(ports["search"], TOPICS["search"])
            print(f"dead letters       {dead:.0f}; search consumed {stored:.0f} of {events:.0f}")
            print("resident memory")
            sampler.report()
        finally:
            stack.down()


if __name__ == "__main__":
    main()
