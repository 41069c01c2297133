"""The two test videos through the local stack (bench/video.py does the embedded mode): each
sent to the gateway's IndexImages as bytes, timed until GetImage says INDEXED (the detector
streams its sampled frames, the embedder embeds them, the search service tracks them at the
last frame); then where the Hamilton clip's two query faces are found, through Search.

    .venv/bin/python bench/video_stack.py [--data ../shared/data/faces]
"""

import argparse
import tempfile
import time
from pathlib import Path

from common import DEFAULT_DATA
from facesearch.devstack.broker import free_port
from facesearch.devstack.stack import Stack
from facesearch.records import Filters
from facesearch.rpc.client import GatewayClient, IndexItem
from facesearch.video import format_ms
from stack import stack_env
from video import QUERIES, VIDEOS


def index_one(client: GatewayClient, path: Path) -> None:
    data = path.read_bytes()
    start = time.perf_counter()
    (queued,) = client.index([IndexItem(data, str(path))])
    if not isinstance(queued, str):
        raise SystemExit(f"{path.name}: refused: {queued}")
    while (state := client.get_image(queued)).status == "queued":
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    if state.record is None:
        raise SystemExit(f"{path.name}: {state.status}: {state.error}")
    record = state.record
    video_s = record.duration_ms / 1000
    print(
        f"{path.name}: {record.width}x{record.height}, {video_s:.1f} s; {record.tracks} tracks, "
        f"{record.faces} points; {seconds:.2f} s from IndexImages to INDEXED: "
        f"{video_s / seconds:.1f} s of video/s"
    )


def found_times(client: GatewayClient, examples: Path) -> None:
    for query in QUERIES:
        found = client.search((examples / query).read_bytes(), 10, None, Filters())
        hits = [
            f"{m.score:.3f} @ {format_ms(m.t_start_ms)}-{format_ms(m.t_end_ms)} "
            f"(best {format_ms(m.best_ms, 2)}) {m.decision}"
            for m in found.faces[0].matches
            if m.video_id
        ]
        print(f"  {query}: {'; '.join(hits) or 'not found'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared faces folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facesearch-bench-video-") as tmp:
        home = Path(tmp)
        kafka, controller = free_port(), free_port()
        stack = Stack(home, env=stack_env(home), kafka_port=kafka, controller_port=controller)
        stack.up()
        try:
            gateway = next(s for s in stack.status() if s.name == "gateway")
            with GatewayClient(gateway.address, timeout_s=120) as client:
                for relative in VIDEOS:
                    path = args.data / relative
                    if not path.is_file():
                        raise SystemExit(f"{path} is missing: pass --data DIR")
                    index_one(client, path)
                    if path.name == "short_hamilton_clip.mp4":
                        found_times(client, path.parent)
        finally:
            stack.down()


if __name__ == "__main__":
    main()
