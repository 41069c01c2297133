"""Index the two test videos (face_recognition's Hamilton clip, facenet-pytorch's walking
people) and report, per video: frames sampled, tracks, points stored, seconds of video and
frames processed per second of wall time; then where the Hamilton clip's two query faces are
found. Models are loaded before the clock starts; each video is timed from opening the file
to its records (detection, embedding, tracking), median of --rounds.

    .venv/bin/python bench/video.py [--data DIR] [--rounds 3] [--fps 2]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import DEFAULT_DATA
from facesearch.calibration import LFW, LFW_THRESHOLD
from facesearch.models import FaceModels
from facesearch.records import Filters, ImageMeta
from facesearch.searching import LocalSteps, search_image
from facesearch.settings import CoreSettings, VideoSettings
from facesearch.store import QdrantFaceStore
from facesearch.video import file_sha256, format_ms
from facesearch.video_indexing import VideoIndexed, index_video

VIDEOS = (
    "face_recognition/examples/short_hamilton_clip.mp4",
    "facenet_pytorch/examples/video.mp4",
)
QUERIES = ("lin-manuel-miranda.png", "alex-lacamoire.png")


def timed_index(
    path: Path, models: FaceModels, settings: CoreSettings, video: VideoSettings, rounds: int
) -> tuple[VideoIndexed, float]:
    video_id = file_sha256(path)
    meta = ImageMeta(str(path), str(path))
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        done = index_video(path, video_id, meta, models, settings, video)
        seconds.append(time.perf_counter() - start)
    return done, statistics.median(seconds)


def report(path: Path, done: VideoIndexed, seconds: float, rounds: int) -> None:
    image = done.image
    frames = done.info.frames
    video_s = image.duration_ms / 1000
    print(
        f"{path.name}: {image.width}x{image.height}, {video_s:.1f} s, {frames} frames; "
        f"{done.samples} sampled ({done.cuts} at scene cuts), {done.faces_seen} faces seen, "
        f"{image.tracks} tracks, {image.faces} points; {seconds:.2f} s (median of {rounds}): "
        f"{video_s / seconds:.1f} s of video/s, {frames / seconds:.0f} frames/s, "
        f"{done.samples / seconds:.1f} samples/s"
    )


def found_times(
    examples: Path, done: VideoIndexed, models: FaceModels, settings: CoreSettings
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = QdrantFaceStore.open(models.model_id, models.dim, Path(folder))
        try:
            store.put_images([(done.image, done.faces)])
            for query in QUERIES:
                data = (examples / query).read_bytes()
                steps = LocalSteps(models, store, settings)
                found = search_image(steps, data, 10, LFW_THRESHOLD, Filters(), LFW)
                hits = [
                    f"{m.score:.3f} @ {format_ms(m.t_start_ms)}-{format_ms(m.t_end_ms)} "
                    f"(best {format_ms(m.best_ms, 2)})"
                    for m in found.faces[0].matches
                ]
                print(f"  {query}: {'; '.join(hits) or 'not found'}")
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared faces folder")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per video")
    parser.add_argument("--fps", type=float, default=VideoSettings.fps, help="samples/second")
    args = parser.parse_args()
    settings = CoreSettings()
    models = FaceModels(settings.models)
    video = VideoSettings(fps=args.fps)
    for relative in VIDEOS:
        path = args.data / relative
        if not path.is_file():
            raise SystemExit(f"{path} is missing: pass --data DIR (the shared faces folder)")
        done, seconds = timed_index(path, models, settings, video, args.rounds)
        report(path, done, seconds, args.rounds)
        if path.name == "short_hamilton_clip.mp4":
            found_times(path.parent, done, models, settings)


if __name__ == "__main__":
    main()
