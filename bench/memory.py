"""Resident memory while indexing many images: RSS sampled as the index grows.

Makes N distinct images from the lfw-devtest photos (mirrored, shifted crops, JPEG qualities,
so every file has its own sha256), indexes them into a fresh embedded Qdrant with the same
``Indexer`` the CLI uses, and prints RSS every --every images, then the peak.

    .venv/bin/python bench/memory.py [--images 10000] [--data ../shared/data/faces/lfw-devtest]
"""

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

from common import DEFAULT_DATA, lfw_images, peak_rss_mib, rss_mib
from facesearch.indexing import Indexer, Outcome, collect_inputs
from facesearch.models import FaceModels
from facesearch.settings import CoreSettings
from facesearch.store import QdrantFaceStore

# (mirror, crop margin in px, JPEG quality): each variant changes the bytes, not the face.
VARIANTS = list(itertools.product((False, True), (0, 6, 12), (90, 80)))


def make_images(sources: list[Path], count: int, folder: Path) -> None:
    made = 0
    for mirror, margin, quality in VARIANTS:
        for source in sources:
            if made == count:
                return
            with Image.open(source) as img:
                out = ImageOps.mirror(img) if mirror else img
                if margin:
                    out = out.crop((margin, margin, out.width - margin, out.height - margin))
                out.convert("RGB").save(folder / f"{made:06d}.jpg", quality=quality)
            made += 1
    if made < count:
        raise SystemExit(f"only {made} variants can be made from {len(sources)} photos")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "lfw-devtest")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument(
        "--discard",
        action="store_true",
        help="run the whole pipeline but drop what it would store, to tell the pipeline's own "
        "memory from the embedded index's (qdrant-client's local mode keeps every point in RAM)",
    )
    args = parser.parse_args()
    settings = CoreSettings.from_env()
    with tempfile.TemporaryDirectory(prefix="facesearch-memory-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        make_images(lfw_images(args.data), args.images, folder)
        models = FaceModels(settings.models)
        store = QdrantFaceStore.open(models.model_id, models.dim, Path(tmp) / "qdrant")
        if args.discard:
            store.put_images = lambda items: None  # type: ignore[method-assign]
        inputs, _ = collect_inputs([folder], "", False)
        print(f"{'images':>8} {'faces':>8} {'RSS MiB':>8} {'images/s':>9}")
        start, done, faces = time.perf_counter(), 0, 0
        print(f"{0:>8} {0:>8} {rss_mib():>8.0f}")

        def sample(outcome: Outcome) -> None:
            nonlocal done, faces
            done += 1
            faces += outcome.faces
            if done % args.every == 0:
                rate = done / (time.perf_counter() - start)
                print(f"{done:>8} {faces:>8} {rss_mib():>8.0f} {rate:>9.1f}", flush=True)

        Indexer(models, store, settings).run(inputs, sample)
        stored = store.stats().faces
        store.close()
    print(f"faces found {faces}, stored {stored}; peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
