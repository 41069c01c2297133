"""Indexing throughput: the whole pipeline against the bare models, on the same images.

Bare models: only the ONNX Runtime calls of the detector and the embedder, on inputs prepared
beforehand (resized detector blobs, aligned crops), per image as the pipeline does it. Pipeline:
``Indexer.run`` from files on disk to faces stored in a fresh embedded Qdrant (read, hash,
decode, detect with post-processing, align, embed, upsert). Prints both rates and their ratio.

    .venv/bin/python bench/throughput.py [--data ../shared/data/faces/lfw-devtest] [--limit N]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from common import DEFAULT_DATA, lfw_images, peak_rss_mib
from facesearch.detection import prepare_input
from facesearch.faces import detect_faces
from facesearch.images import decode_image
from facesearch.indexing import Indexer, Outcome, collect_inputs
from facesearch.models import FaceModels
from facesearch.settings import CoreSettings
from facesearch.store import QdrantFaceStore

Prepared = list[tuple[np.ndarray, np.ndarray | None]]


def prepare_bare(models: FaceModels, settings: CoreSettings, paths: list[Path]) -> Prepared:
    """Per image: the detector's input tensor and the embedder's (None without a face), made
    by the same functions the pipeline uses."""
    rec = models.recognizer
    prepared: Prepared = []
    for path in paths:
        bgr = decode_image(path.read_bytes(), settings.limits)
        det_input = prepare_input(bgr, settings.models.det_max_side)
        crops = [f.crop for f in detect_faces(models, bgr, settings.max_faces_per_image, det_input)]
        rec_blob = None
        if crops:
            rec_blob = cv2.dnn.blobFromImages(
                crops, 1.0 / rec.input_std, rec.input_size, (rec.input_mean,) * 3, swapRB=True
            ).astype(np.float32)
        prepared.append((det_input.blob, rec_blob))
    return prepared


def run_bare(models: FaceModels, prepared: Prepared) -> float:
    det, rec = models.detector, models.recognizer
    start = time.perf_counter()
    for det_blob, rec_blob in prepared:
        det.session.run(det.output_names, {det.input_name: det_blob})
        if rec_blob is not None:
            rec.session.run(rec.output_names, {rec.input_name: rec_blob})
    return len(prepared) / (time.perf_counter() - start)


def run_pipeline(
    models: FaceModels, settings: CoreSettings, paths: list[Path]
) -> tuple[float, int]:
    """Images per second of the whole pipeline into a fresh embedded index, and faces stored."""
    inputs, _ = collect_inputs(paths, "", False)
    with tempfile.TemporaryDirectory(prefix="facesearch-bench-") as tmp:
        store = QdrantFaceStore.open(models.model_id, models.dim, Path(tmp) / "qdrant")
        outcomes: list[Outcome] = []
        start = time.perf_counter()
        Indexer(models, store, settings).run(inputs, outcomes.append)
        rate = len(inputs) / (time.perf_counter() - start)
        faces = store.stats().faces
        store.close()
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise SystemExit(f"{len(failed)} images failed, first: {failed[0]}")
    return rate, faces


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "lfw-devtest")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    parser.add_argument("--rounds", type=int, default=5, help="bare/pipeline pairs to run")
    args = parser.parse_args()
    settings = CoreSettings.from_env()
    paths = lfw_images(args.data)[: args.limit or None]
    models = FaceModels(settings.models)
    prepared = prepare_bare(models, settings, paths)
    run_bare(models, prepared[:100])  # warm-up
    bare, pipeline, ratios = [], [], []
    print(f"{'round':>5} {'bare img/s':>11} {'pipeline img/s':>15} {'ratio':>7}")
    for round_ in range(1, args.rounds + 1):
        # Alternating the two within each round keeps slow drifts of this VM out of the ratio.
        bare.append(run_bare(models, prepared))
        rate, faces = run_pipeline(models, settings, paths)
        pipeline.append(rate)
        ratios.append(rate / bare[-1])
        print(f"{round_:>5} {bare[-1]:>11.1f} {rate:>15.1f} {ratios[-1]:>7.1%}", flush=True)
    print(f"images             {len(paths)} ({args.data}), {faces} faces")
    print(f"bare models        {statistics.median(bare):.1f} images/s (median)")
    print(f"whole pipeline     {statistics.median(pipeline):.1f} images/s (median)")
    print(f"ratio              {statistics.median(ratios):.1%} (median of per-round ratios)")
    print(f"peak RSS           {peak_rss_mib():.0f} MiB (the bare inputs are all held in memory)")


if __name__ == "__main__":
    main()
