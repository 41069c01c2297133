"""Indexing throughput: the whole pipeline against the bare models, on the same images.

Bare models: only the ONNX Runtime calls of the detector and the embedder, on inputs prepared
beforehand (resized detector blobs, aligned crops), per image as the pipeline does it. Pipeline:
``Indexer.run`` from files on disk to faces stored in a fresh embedded Qdrant (read, hash,
decode, detect with post-processing, align, embed, upsert). Prints both rates and their ratio.

    .venv/bin/python bench/throughput.py [--data ../shared/data/faces/lfw-devtest] [--limit N]
"""

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from common import DEFAULT_DATA, lfw_images, peak_rss_mib
from facesearch.faces import detect_faces, detector_input_size
from facesearch.images import decode_image
from facesearch.indexing import Indexer, Outcome, collect_inputs
from facesearch.models import FaceModels
from facesearch.settings import CoreSettings
from facesearch.store import QdrantFaceStore

Prepared = list[tuple[np.ndarray, np.ndarray | None]]


def prepare_bare(models: FaceModels, settings: CoreSettings, paths: list[Path]) -> Prepared:
    """Per image: the detector's input blob and the embedder's input blob (or None)."""
    det = models.detector
    rec = models.recognizer
    prepared: Prepared = []
    for path in paths:
        bgr = decode_image(path.read_bytes(), settings.limits)
        height, width = bgr.shape[:2]
        width, height = detector_input_size(height, width, settings.models.det_max_side)
        scale = min(width / bgr.shape[1], height / bgr.shape[0])
        resized = cv2.resize(bgr, (int(bgr.shape[1] * scale), int(bgr.shape[0] * scale)))
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        det_blob = det._prepare_input_blob(canvas, (width, height))
        crops = [f.crop for f in detect_faces(models, bgr, settings.max_faces_per_image)]
        rec_blob = None
        if crops:
            rec_blob = cv2.dnn.blobFromImages(
                crops, 1.0 / rec.input_std, rec.input_size, (rec.input_mean,) * 3, swapRB=True
            ).astype(np.float32)
        prepared.append((det_blob, rec_blob))
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
    inputs, _ = collect_inputs(paths, "", False)
    faces = 0
    with tempfile.TemporaryDirectory(prefix="facesearch-bench-") as tmp:
        store = QdrantFaceStore.open(models.model_id, models.dim, Path(tmp) / "qdrant")
        start = time.perf_counter()
        outcomes: list[Outcome] = []
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
    parser.add_argument(
        "--det-max-side", type=int, default=0, help="override FACESEARCH_DET_MAX_SIDE"
    )
    args = parser.parse_args()
    settings = CoreSettings.from_env()
    if args.det_max_side:
        settings = replace(
            settings, models=replace(settings.models, det_max_side=args.det_max_side)
        )
    paths = lfw_images(args.data)[: args.limit or None]
    models = FaceModels(settings.models)
    prepared = prepare_bare(models, settings, paths[:50])  # warm-up, also of the allocator
    run_bare(models, prepared)
    prepared = prepare_bare(models, settings, paths)
    bare_before = run_bare(models, prepared)
    pipeline, faces = run_pipeline(models, settings, paths)
    bare_after = run_bare(models, prepared)
    bare = (bare_before + bare_after) / 2
    print(f"images             {len(paths)} ({args.data})")
    print(f"faces indexed      {faces}")
    print(f"bare models        {bare:.1f} images/s (runs: {bare_before:.1f}, {bare_after:.1f})")
    print(f"whole pipeline     {pipeline:.1f} images/s")
    print(f"ratio              {pipeline / bare:.1%} of the bare models")
    print(f"peak RSS           {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
