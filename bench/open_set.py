"""Open-set identification at gallery scale: do the decisions hold what they promise?

Every lfw-devtest photo's central face is embedded once (bench/results cache, as scale.py).
Enrolled: the first photo of each person with two or more. Mated probes: their other photos.
Non-mated probes: the photo of every person with one (never enrolled). The gallery holds the
enrolled faces, every real face of the other folders (unlabelled), and distractors drawn from
``distractors.py``'s model fitted to the real faces, up to each size (10^3 ... 10^6, nested:
each gallery holds the smaller ones). Search is exact (NumPy), so HNSW plays no part.

For each size: rank-1 (the top candidate is the mate), FNIR at FPIR 1% and 0.1% (thresholds
chosen on the non-mated probes' best scores), and, at the ``match`` and ``possible``
thresholds the bundled calibration gives for that size, the FPIR observed next to its target,
and the FNIR. Two checks of the model itself:

- ``*_fpir_predicted``: real probes score lower against drawn distractors than against real
  faces (the drawn tail is lighter), so on galleries that are mostly drawn the bundled
  thresholds are stricter than the target. A tail fitted to the strangers' scores against a
  separate draw of 10^5 distractors, with the bundled one for the real faces, predicts the
  FPIR of each gallery as it is made up: 1 - (1 - FMR_real)^n_real (1 - FMR_drawn)^n_drawn.
  Seen close to predicted says the extrapolation in N holds and the gap to the target is the
  gallery's tail; ``distractor_vs_real_fmr`` says by how much a drawn face falls short;
- ``real_only``: real faces only, the model fitted on half the people's pairs and checked on
  the other half's probes searched against random galleries of the others (100-1,500 faces,
  never the probe's own person): the FPIR seen next to the target.

Then the compare experiment: ``facesearch compare`` (the command, in a subprocess, its
defaults) with the known folder = one photo of each person with two or more, the unknown
folder = their other photos and every single-photo person; an image is answered right when the
names given are exactly its person (mated) or none (stranger).

    .venv/bin/python bench/open_set.py [--sizes 1000 10000 ...] [--no-compare]

It prints one JSON object per line, each with its "part".
"""

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import DEFAULT_DATA, ROOT
from distractors import FaceModel, fit
from facesearch.calibration import LFW, Calibration, fit_tail, pair_scores, threshold_at_fmr
from facesearch.evaluation import person_images
from facesearch.models import FaceModels
from facesearch.settings import CoreSettings
from scale import Real, real_faces

SIZES = (1_000, 10_000, 100_000, 1_000_000)
CHUNK = 100_000
FPIRS = (0.01, 0.001)


@dataclass(frozen=True)
class Protocol:
    enrolled: np.ndarray  # rows of real.vectors in the gallery, with a person
    mated: np.ndarray  # rows of mated probes
    strangers: np.ndarray  # rows of non-mated probes
    unlabelled: np.ndarray  # rows of real faces of no known person (gallery too)


def protocol(real: Real) -> Protocol:
    labelled = np.flatnonzero(real.person >= 0)
    first: dict[int, int] = {}
    counts = np.bincount(real.person[labelled])
    for row in labelled:
        first.setdefault(int(real.person[row]), int(row))
    enrolled = np.array(sorted(r for p, r in first.items() if counts[p] >= 2))
    mated = np.array(
        [r for r in labelled if counts[real.person[r]] >= 2 and first[real.person[r]] != r]
    )
    strangers = np.array(sorted(r for p, r in first.items() if counts[p] == 1))
    return Protocol(enrolled, mated, strangers, np.flatnonzero(real.person < 0))


class Best:
    """Per probe, the best gallery score so far and, for mated probes, whether it is the mate."""

    def __init__(self, probes: int) -> None:
        self.score = np.full(probes, -np.inf, np.float32)
        self.person = np.full(probes, -3)

    def update(self, scores: np.ndarray, person: np.ndarray) -> None:
        top = np.argmax(scores, axis=1)
        value = scores[np.arange(len(top)), top]
        better = value > self.score
        self.score[better] = value[better]
        self.person[better] = person[top[better]]


def galleries(
    real: Real, proto: Protocol, model: FaceModel, sizes: list[int], rng: np.random.Generator
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Chunks of (gallery size reached, vectors, persons): the real faces first, then
    distractors (person -2), ending exactly at each size."""
    rows = np.concatenate([proto.enrolled, proto.unlabelled])
    yield len(rows), real.vectors[rows], real.person[rows]
    done = len(rows)
    for size in sorted(sizes):
        while done < size:
            count = min(CHUNK, size - done)
            vectors, _ = model.sample(rng, count)
            done += count
            yield done, vectors, np.full(count, -2)


def searched(
    real: Real, proto: Protocol, model: FaceModel, sizes: list[int], seed: int
) -> dict[int, tuple[Best, Best]]:
    """At each size, the mated and the non-mated probes' best candidates."""
    mated, strangers = Best(len(proto.mated)), Best(len(proto.strangers))
    results = {}
    for done, vectors, person in galleries(real, proto, model, sizes, np.random.default_rng(seed)):
        mated.update(real.vectors[proto.mated] @ vectors.T, person)
        strangers.update(real.vectors[proto.strangers] @ vectors.T, person)
        if done in sizes:
            results[done] = (_copy(mated), _copy(strangers))
    return results


def _copy(best: Best) -> Best:
    copy = Best(len(best.score))
    copy.score, copy.person = best.score.copy(), best.person.copy()
    return copy


@dataclass(frozen=True)
class Tails:
    """FMR of a stranger against a real face (the bundled model) and against a distractor (a
    tail fitted to the strangers' scores against a separate draw of distractors)."""

    real: Calibration
    distractor: Calibration
    real_faces: int  # real faces in every gallery

    def fpir(self, threshold: float, size: int) -> float:
        """FPIR predicted for a gallery of ``real_faces`` real faces and distractors to
        ``size``: 1 - (1 - FMR_real)^n_real (1 - FMR_distractor)^n_distractors."""
        real = min(size, self.real_faces)
        miss_real = 1.0 - self.real.fpir(threshold, real)
        miss_drawn = 1.0 - self.distractor.fpir(threshold, size - real) if size > real else 1.0
        return 1.0 - miss_real * miss_drawn


def distractor_tail(real: Real, proto: Protocol, model: FaceModel, seed: int) -> Tails:
    sample, _ = model.sample(np.random.default_rng(seed + 1), 100_000)
    scores = (real.vectors[proto.strangers] @ sample.T).ravel()
    fitted = Calibration("distractors", fit_tail(scores))
    return Tails(LFW, fitted, len(proto.enrolled) + len(proto.unlabelled))


def identification(
    size: int, mated: Best, strangers: Best, mate: np.ndarray, tails: Tails
) -> dict[str, Any]:
    hit = mated.person == mate
    row: dict[str, Any] = {"gallery": size, "real_faces": min(size, tails.real_faces)}
    row["rank1"] = float(hit.mean())
    for fpir in FPIRS:
        threshold = threshold_at_fmr(strangers.score, fpir)
        row[f"fnir_at_fpir_{fpir:g}"] = float(np.mean(~(hit & (mated.score >= threshold))))
        row[f"threshold_at_fpir_{fpir:g}"] = round(threshold, 4)
    decisions = tails.real.decisions(size)
    for name, threshold, target in (
        ("match", decisions.match_threshold, decisions.match_fpir),
        ("possible", decisions.possible_threshold, decisions.possible_fpir),
    ):
        row[f"{name}_threshold"] = round(threshold, 4)
        row[f"{name}_fpir_target"] = float(f"{target:.3g}")
        row[f"{name}_fpir_seen"] = float(np.mean(strangers.score >= threshold))
        row[f"{name}_fpir_predicted"] = float(f"{tails.fpir(threshold, size):.3g}")
        row[f"{name}_fnir"] = float(np.mean(~(hit & (mated.score >= threshold))))
    row["strangers"] = len(strangers.score)
    # How much less often a distractor than a real face reaches the match threshold.
    at = decisions.match_threshold
    row["distractor_vs_real_fmr"] = float(
        f"{tails.distractor.tail.fmr(at) / tails.real.tail.fmr(at):.3g}"
    )
    return row


def real_only(
    real: Real, seed: int, sizes: tuple[int, ...] = (100, 300, 1000, 1500)
) -> list[dict[str, Any]]:
    """The model fitted on half the people's pairs; FPIR it predicts for galleries of the
    other faces, and FPIR seen for the other half's probes (leave-person-out)."""
    labelled = np.flatnonzero(real.person >= 0)
    vectors, person = real.vectors[labelled], real.person[labelled]
    rng = np.random.default_rng(seed)
    people = np.unique(person)
    half = np.isin(person, rng.permutation(people)[: len(people) // 2])
    _, impostor = pair_scores(vectors[half], person[half])
    calibration = Calibration("half", fit_tail(impostor))
    probes = np.flatnonzero(~half)
    scores = vectors[probes] @ vectors.T
    scores[person[probes][:, None] == person[None, :]] = -np.inf  # never the probe's own person
    rows = []
    for size in sizes:
        # A gallery of ``size`` of the others for each probe: a random subset of its columns.
        seen = []
        for _ in range(5):
            columns = rng.choice(len(vectors), size=min(size, len(vectors)), replace=False)
            seen.append(scores[:, columns])
        for target in (0.01, 0.1):
            threshold = calibration.threshold_for(target, size)
            fpir = np.mean([np.mean(s.max(axis=1) >= threshold) for s in seen])
            rows.append({"gallery": size, "fpir_target": target, "fpir_seen": float(fpir),
                         "threshold": round(threshold, 4), "probes": len(probes)})  # fmt: skip
    return rows


def compare_experiment(data: Path) -> dict[str, Any]:
    """facesearch compare, as a user runs it, on lfw-devtest."""
    photos: dict[str, list[Path]] = {}
    for person, path in person_images(data / "lfw-devtest"):
        photos.setdefault(person, []).append(path)
    with tempfile.TemporaryDirectory(prefix="open-set-") as tmp:
        known, unknown = Path(tmp, "known"), Path(tmp, "unknown")
        known.mkdir()
        unknown.mkdir()
        truth: dict[str, str | None] = {}
        for person, paths in photos.items():
            several = len(paths) >= 2
            if several:
                (known / f"{person}{paths[0].suffix}").symlink_to(paths[0])
            for path in paths[1:] if several else paths:
                link = unknown / path.name
                link.symlink_to(path)
                truth[str(link)] = person if several else None
        start = time.perf_counter()
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "facesearch"), "compare", str(known), str(unknown)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    given: dict[str, set[str]] = {path: set() for path in truth}
    for line in done.stdout.splitlines():
        shown, name = line.rsplit(",", 1)
        if name not in ("unknown_person", "no_persons_found"):
            given[shown].add(name)
    right = sum(given[p] == ({t} if t else set()) for p, t in truth.items())
    strangers = [p for p, t in truth.items() if t is None]
    return {
        "known": sum(len(paths) >= 2 for paths in photos.values()),
        "images": len(truth),
        "strangers": len(strangers),
        "answered_right": right / len(truth),
        "strangers_named": sum(bool(given[p]) for p in strangers) / len(strangers),
        "several_names": sum(len(names) > 1 for names in given.values()),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compare", action="store_true", help="skip the compare experiment")
    args = parser.parse_args()
    settings = CoreSettings()
    real = real_faces(args.data, FaceModels(settings.models), settings)
    proto = protocol(real)
    labelled = real.person >= 0
    model = fit(real.vectors[labelled], [str(p) for p in real.person[labelled]])
    start = time.perf_counter()
    found = searched(real, proto, model, args.sizes, args.seed)
    mate = real.person[proto.mated]
    tails = distractor_tail(real, proto, model, args.seed)
    report: dict[str, Any] = {
        "identification": [identification(n, *found[n], mate, tails) for n in sorted(found)],
        "real_only": real_only(real, args.seed),
        "search_seconds": round(time.perf_counter() - start, 1),
    }
    if not args.no_compare:
        report["compare"] = compare_experiment(args.data)
    for name, value in report.items():
        rows = value if isinstance(value, list) else [value]
        for row in rows:
            print(json.dumps({"part": name, **row} if isinstance(row, dict) else {name: row}))


if __name__ == "__main__":
    main()
