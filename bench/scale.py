"""The embedded index at gallery scale: 10^4, 10^5 and 10^6 faces.

Gallery: every real face of the data folder (the central face of each lfw-devtest photo, with
its person, and every face of the other folders' images), less the queries, plus distractors
drawn from a model fitted to the real embeddings (``distractors.py``: identity centres from the
between-person covariance, faces around them from the within-person covariance). Queries: 1,000
real lfw-devtest faces held out of the gallery (``--queries``); those whose person has other
photos in the gallery are the mated ones.

For each size the index is built through the store (``put_images``, one image record per face,
batches of 1,000, as indexing writes them), closed, and then opened and searched in a fresh
process (so its memory is the index's): top 10, one query at a time. Against exact search on
the same vectors (NumPy):

- ``recall_at_10``: the share of the exact top 10 that the index returns;
- ``recall_shown``: the same, counting only neighbours scoring at or above the lowest score a
  user is shown (the ``possible`` threshold for a gallery of that size, FPIR 10%);
- ``mate_recall``: the same again, counting only the query person's own other photos.

Also ``p50_ms``/``p99_ms`` of the store's ``query``, ``rss_mib`` (peak, of the searching
process, or of the Qdrant server with ``--store server``), ``disk_mib``, ``build_s`` (and
faces per second; for a server, until it has built its graph), ``open_s``.

    .venv/bin/python bench/scale.py [--faces N ...] [--store edge|local|server] [--json]
"""

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client.models import CollectionStatus

from common import DEFAULT_DATA, peak_rss_mib, rss_parts_mib
from distractors import FaceModel, fit, pair_scores, score_summary
from facesearch.calibration import LFW
from facesearch.devstack.broker import free_port
from facesearch.devstack.qdrant import QdrantServer, require_binary
from facesearch.edge_store import EdgeFaceStore
from facesearch.evaluation import embed_people
from facesearch.images import decode_image
from facesearch.models import FaceModels
from facesearch.pipeline import analyze_decoded, embed
from facesearch.records import FaceRecord, Filters, ImageMeta, ImageRecord
from facesearch.settings import CoreSettings, HnswSettings
from facesearch.store import FaceStore, QdrantFaceStore, faces_collection_name

SIZES = (10_000, 100_000, 1_000_000)
TOP = 10
BATCH = 1000
MODEL = "scale-bench"
CACHE = Path(__file__).resolve().parent / "results" / "real_faces.npz"


@dataclass(frozen=True)
class Real:
    vectors: np.ndarray  # every real face
    person: np.ndarray  # its person's number, -1 for faces of unlabelled images


def real_faces(data: Path, models: FaceModels, settings: CoreSettings) -> Real:
    """Every real face of ``data``, embedded once and cached in bench/results."""
    if CACHE.is_file():
        cached = np.load(CACHE)
        if str(cached["model"]) == models.model_id:
            return Real(cached["vectors"], cached["person"])
    lfw = embed_people(data / "lfw-devtest", models, settings)
    names = {name: i for i, name in enumerate(sorted(set(lfw.labels)))}
    vectors, person = [lfw.vectors], [np.array([names[n] for n in lfw.labels])]
    others = [p for p in sorted(data.rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    for path in others:
        if "lfw-devtest" in path.parts:
            continue
        try:
            bgr = decode_image(path.read_bytes(), settings.limits)
        except Exception:
            continue
        found = analyze_decoded(path.name, bgr, models, settings)
        if found.faces:
            vectors.append(embed(models, found))
            person.append(np.full(len(found.faces), -1))
    real = Real(np.concatenate(vectors).astype(np.float32), np.concatenate(person))
    CACHE.parent.mkdir(exist_ok=True)
    np.savez(CACHE, vectors=real.vectors, person=real.person, model=models.model_id)
    return real


def split(real: Real, queries: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the query faces (labelled ones) and of the real gallery faces."""
    labelled = np.flatnonzero(real.person >= 0)
    chosen = np.sort(rng.choice(labelled, size=min(queries, len(labelled) - 1), replace=False))
    rest = np.setdiff1d(np.arange(len(real.person)), chosen)
    return chosen, rest


def gallery_of(
    real: Real, rows: np.ndarray, model: FaceModel, faces: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``faces`` gallery vectors (the real ones first) and each one's person (-2 for a
    distractor: nobody's mate)."""
    extra = max(0, faces - len(rows))
    synthetic, _ = model.sample(rng, extra) if extra else (np.zeros((0, 512), np.float32), None)
    vectors = np.concatenate([real.vectors[rows], synthetic])[:faces]
    person = np.concatenate([real.person[rows], np.full(extra, -2)])[:faces]
    return vectors, person


def image_id(row: int) -> str:
    return f"{row:064x}"


def build(store: FaceStore, vectors: np.ndarray, model: str = MODEL) -> None:
    meta = ImageMeta("synthetic")
    for start in range(0, len(vectors), BATCH):
        items = []
        for row in range(start, min(start + BATCH, len(vectors))):
            key = image_id(row)
            face = FaceRecord(key, 0, (0.0, 0.0, 1.0, 1.0), 1.0, 1.0, vectors[row].tolist())
            items.append((ImageRecord(key, meta, 1, model, 1, 1, ""), [face]))
        store.put_images(items)


def open_store(kind: str, where: str, hnsw: HnswSettings, quantization: bool) -> FaceStore:
    """The index in folder ``where``, or on the server at URL ``where``."""
    if kind == "edge":
        return EdgeFaceStore.open(MODEL, 512, Path(where), hnsw=hnsw, quantization=quantization)
    if kind == "server":
        return QdrantFaceStore.open(MODEL, 512, Path(), where, hnsw=hnsw)
    return QdrantFaceStore.open(MODEL, 512, Path(where))


def wait_indexed(url: str) -> None:
    """Until the server has no optimisation left to run on the faces (its graph is built)."""
    client = QdrantClient(url=url, check_compatibility=False)
    try:
        while client.get_collection(faces_collection_name(MODEL)).status != CollectionStatus.GREEN:
            time.sleep(1)
    finally:
        client.close()


def search(
    kind: str, where: str, hnsw: HnswSettings, quantization: bool, queries: np.ndarray
) -> dict[str, Any]:
    """In a fresh process: open the index, run each query alone; what came back and when."""
    begun = time.perf_counter()
    store = open_store(kind, where, hnsw, quantization)
    opened = time.perf_counter() - begun
    seconds, found = [], []
    try:
        for vector in queries:
            start = time.perf_counter()
            (matches,) = store.query(vector[None, :], TOP, -1.0, Filters())
            seconds.append(time.perf_counter() - start)
            found.append([int(m.image_id, 16) for m in matches])
    finally:
        store.close()
    parts = rss_parts_mib()
    return {
        "open_s": opened,
        "seconds": seconds,
        "found": found,
        "rss_mib": peak_rss_mib(),
        "anon_mib": parts.get("RssAnon", 0.0),
        "file_mib": parts.get("RssFile", 0.0),
    }


def exact_top(gallery: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and scores of each query's exact top ``TOP``, best first."""
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    best_scores = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(gallery), 200_000):
        scores = queries @ gallery[start : start + 200_000].T
        rows = np.argpartition(-scores, min(TOP, scores.shape[1] - 1), axis=1)[:, :TOP]
        best_rows = np.hstack([best_rows, rows + start])
        best_scores = np.hstack([best_scores, np.take_along_axis(scores, rows, axis=1)])
        keep = np.argsort(-best_scores, axis=1)[:, :TOP]
        best_rows = np.take_along_axis(best_rows, keep, axis=1)
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
    return best_rows, best_scores


def recalls(
    found: list[list[int]],
    rows: np.ndarray,
    scores: np.ndarray,
    query_person: np.ndarray,
    gallery_person: np.ndarray,
    shown: float,
) -> dict[str, float]:
    hits = {"all": [0, 0], "shown": [0, 0], "mates": [0, 0]}
    for returned, exact_rows, exact_scores, person in zip(
        found, rows, scores, query_person, strict=True
    ):
        got = set(returned)
        for row, score in zip(exact_rows, exact_scores, strict=True):
            kinds = ["all"]
            if score >= shown:
                kinds.append("shown")
                if gallery_person[row] == person:
                    kinds.append("mates")
            for kind in kinds:
                hits[kind][0] += row in got
                hits[kind][1] += 1
    return {f"recall_{k}": (h / n if n else float("nan")) for k, (h, n) in hits.items()}


def measure(
    size: int,
    args: argparse.Namespace,
    real: Real,
    model: FaceModel,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """One index of ``size`` faces, built once and searched at each of ``args.ef``."""
    query_rows, gallery_rows = split(real, args.queries, rng)
    gallery, person = gallery_of(real, gallery_rows, model, size, rng)
    queries = real.vectors[query_rows]
    built = HnswSettings(args.m, args.ef_construct)
    folder = Path(tempfile.mkdtemp(prefix="scale-", dir=args.work))
    searches = []
    server_mib = 0.0
    try:
        with contextlib.ExitStack() as running:
            where = str(folder / "index")
            if args.store == "server":
                binary = require_binary(os.environ)
                server = QdrantServer(binary, folder / "index", free_port(), free_port())
                where = running.enter_context(server).url
            store = open_store(args.store, where, built, args.quantization)
            begun = time.perf_counter()
            try:
                build(store, gallery)
            finally:
                store.close()
            if args.store == "server":
                wait_indexed(where)
            build_s = time.perf_counter() - begun
            disk = sum(f.stat().st_size for f in (folder / "index").rglob("*") if f.is_file())
            for ef in args.ef:
                hnsw = HnswSettings(args.m, args.ef_construct, ef)
                with multiprocessing.get_context("spawn").Pool(1) as pool:
                    work = (args.store, where, hnsw, args.quantization, queries)
                    searches.append((ef, pool.apply(search, work)))
            if args.store == "server":
                server_mib = peak_rss_mib(server.running_pid() or 0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows, scores = exact_top(gallery, queries)
    common = {
        "faces": size,
        "store": args.store,
        "m": args.m,
        "ef_construct": args.ef_construct,
        "int8": args.quantization,
        "disk_mib": round(disk / 2**20, 1),
        "build_s": round(build_s, 1),
        "faces_per_s": round(size / build_s),
        "queries": len(query_rows),
        "real_faces": int(min(size, len(gallery_rows))),
    }
    results = []
    for ef, done in searches:
        shown = LFW.decisions(size).possible_threshold
        found = recalls(done["found"], rows, scores, real.person[query_rows], person, shown)
        milliseconds = np.array(done["seconds"]) * 1000
        results.append(
            {
                **common,
                "ef": ef,
                "p50_ms": round(float(np.percentile(milliseconds, 50)), 2),
                "p99_ms": round(float(np.percentile(milliseconds, 99)), 2),
                "recall_at_10": round(found["recall_all"], 4),
                "recall_shown": round(found["recall_shown"], 4),
                "mate_recall": round(found["recall_mates"], 4),
                # the server's peak, which holds the index, where there is one
                "rss_mib": round(server_mib or done["rss_mib"], 1),
                "anon_mib": round(done["anon_mib"], 1),  # the searching process's, at the end
                "file_mib": round(done["file_mib"], 1),
                "open_s": round(done["open_s"], 2),
            }
        )
    return results


def distributions(real: Real, model: FaceModel, rng: np.random.Generator) -> dict[str, Any]:
    """Genuine and impostor scores of real faces, of sampled ones, and real against sampled."""
    labelled = real.person >= 0
    real_genuine, real_impostor = pair_scores(real.vectors[labelled], real.person[labelled])
    sampled, identity = model.sample(rng, 3000)
    synth_genuine, synth_impostor = pair_scores(sampled, identity)
    cross = (real.vectors[labelled][:1000] @ sampled[:3000].T).ravel()
    return {
        "real genuine": score_summary(real_genuine),
        "real impostor": score_summary(real_impostor),
        "sampled genuine": score_summary(synth_genuine),
        "sampled impostor": score_summary(synth_impostor),
        "real vs sampled": score_summary(cross),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--faces", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--store",
        choices=("edge", "local", "server"),
        default="edge",
        help="Qdrant Edge, qdrant-client's local mode, or a Qdrant server started for the run "
        "(the binary from QDRANT_BIN, ../shared/bin/qdrant or PATH)",
    )
    parser.add_argument("--m", type=int, default=HnswSettings.m)
    parser.add_argument("--ef-construct", type=int, default=HnswSettings.ef_construct)
    parser.add_argument(
        "--ef", type=int, nargs="+", default=[HnswSettings.ef], help="search ef, one or more"
    )
    parser.add_argument(
        "--quantization",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="int8 scalar quantization with rescoring (Edge)",
    )
    parser.add_argument("--work", type=Path, default=None, help="folder for the indexes")
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    parser.add_argument("--distributions", action="store_true", help="print score summaries")
    args = parser.parse_args()
    settings = CoreSettings()
    models = FaceModels(settings.models)
    real = real_faces(args.data, models, settings)
    labelled = real.person >= 0
    model = fit(real.vectors[labelled], [str(p) for p in real.person[labelled]])
    if args.distributions:
        for name, summary in distributions(real, model, np.random.default_rng(1)).items():
            print(f"{name:<17} " + "  ".join(f"{k} {v:.4f}" for k, v in summary.items()))
    for size in args.faces:
        for result in measure(size, args, real, model, np.random.default_rng(size)):
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
