"""Open-set identification on lfw-devtest, and how the calibrated thresholds hold up.

Every image's central face is embedded once (as ``facesearch eval lfw`` does). Protocol:

- gallery: the first photo (by file name) of each person with at least 2 photos with a face,
  plus every person with a single photo as a distractor (a non-mated gallery entry);
- mated probes: the other photos of the people with 2 or more; each is searched against the
  whole gallery;
- non-mated probes: each single-photo person's photo, searched against the gallery minus
  itself (leave-one-out), so that nobody in the gallery is that person.

Figures: rank-1 accuracy of mated probes; FNIR at FPIR = 1% (the threshold T is the lowest at
which at most 1% of non-mated probes have any gallery entry scoring >= T; FNIR is the fraction
of mated probes whose mate is not the top candidate at or above T); for each per-pair
operating point of the bundled calibration (``calibration.LFW``), the false-match rate observed
on every impostor pair of the data next to the rate it was calibrated for, with FNMR, FPIR and
FNIR at it. Those points were calibrated on this same data, so the observed rates are
optimistic; the split-half part calibrates on the pairs of a random half of the people and
measures on the other half (both ways, ``--splits`` random splits).

    .venv/bin/python bench/identification.py [--data ../shared/data/faces/lfw-devtest]
"""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import DEFAULT_DATA
from facesearch.calibration import FMRS, LFW, pair_scores, threshold_at_fmr
from facesearch.evaluation import Embedded, embed_people
from facesearch.models import FaceModels
from facesearch.settings import CoreSettings

FPIR_TARGET = 0.01
# The bundled calibration's per-pair points (its tail model at each FMR).
OPERATING_POINTS = {fmr: LFW.tail.threshold(fmr) for fmr in FMRS}


@dataclass(frozen=True)
class Searches:
    """Per mated probe: whether the top candidate is its mate, and that candidate's score;
    per non-mated probe: its best score against the gallery."""

    top_is_mate: np.ndarray
    top_score: np.ndarray
    nonmated_best: np.ndarray
    gallery: int  # entries a non-mated probe is searched against: all but its own
    misses: list[str]  # mated probes whose top candidate is someone else


def split_gallery(labels: list[str]) -> tuple[list[int], list[int], list[int]]:
    """Row indices of gallery entries, mated probes and single-photo people (rows are in
    file-name order, so a person's first row is their first photo)."""
    first: dict[str, int] = {}
    counts: dict[str, int] = {}
    for row, label in enumerate(labels):
        first.setdefault(label, row)
        counts[label] = counts.get(label, 0) + 1
    gallery = sorted(first.values())
    probes = [r for r, label in enumerate(labels) if first[label] != r]
    singles = [r for r in gallery if counts[labels[r]] == 1]
    return gallery, probes, singles


def search_all(embedded: Embedded) -> Searches:
    labels = np.asarray(embedded.labels)
    gallery, probes, singles = split_gallery(embedded.labels)
    vectors = embedded.vectors
    scores = vectors[probes] @ vectors[gallery].T
    top = np.argmax(scores, axis=1)
    top_is_mate = labels[gallery][top] == labels[probes]
    misses = [
        f"{embedded.paths[probes[i]]} -> {embedded.paths[gallery[top[i]]]} "
        f"({scores[i, top[i]]:.3f}; mate {scores[i][labels[gallery] == labels[probes[i]]][0]:.3f})"
        for i in np.flatnonzero(~top_is_mate)
    ]
    nonmated = vectors[singles] @ vectors[gallery].T
    position = {row: column for column, row in enumerate(gallery)}
    # Leave-one-out: a single-photo person's own gallery entry is not a candidate.
    nonmated[np.arange(len(singles)), [position[r] for r in singles]] = -np.inf
    best = scores.max(axis=1)
    return Searches(top_is_mate, best, nonmated.max(axis=1), len(gallery) - 1, misses)


def fpir(searches: Searches, threshold: float) -> float:
    return float(np.mean(searches.nonmated_best >= threshold))


def fnir(searches: Searches, threshold: float) -> float:
    return float(np.mean(~(searches.top_is_mate & (searches.top_score >= threshold))))


def split_half(embedded: Embedded, splits: int) -> dict[float, list[tuple[float, float]]]:
    """Per FMR target: (observed FMR, FNMR) on one half with the threshold from the other."""
    people = sorted(set(embedded.labels))
    labels = np.asarray(embedded.labels)
    observed: dict[float, list[tuple[float, float]]] = {f: [] for f in OPERATING_POINTS}
    for seed in range(splits):
        shuffled = np.random.default_rng(seed).permutation(people)
        half = np.isin(labels, shuffled[: len(people) // 2])
        for calibrate_on, observe_on in ((half, ~half), (~half, half)):
            _, impostor = pair_scores(embedded.vectors[calibrate_on], labels[calibrate_on])
            genuine_b, impostor_b = pair_scores(embedded.vectors[observe_on], labels[observe_on])
            for fmr in OPERATING_POINTS:
                threshold = threshold_at_fmr(impostor, fmr)
                observed[fmr].append(
                    (float(np.mean(impostor_b >= threshold)), float(np.mean(genuine_b < threshold)))
                )
    return observed


def print_identification(embedded: Embedded, searches: Searches) -> None:
    people = len(set(embedded.labels))
    print(
        f"images         {len(embedded.paths)} with a face of {people} people "
        f"({len(embedded.no_face)} without), embedded in {embedded.seconds:.1f} s"
    )
    singles = len(searches.nonmated_best)
    print(
        f"gallery        {searches.gallery + 1} ({searches.gallery + 1 - singles} mated + "
        f"{singles} single-photo distractors); {len(searches.top_score)} mated probes, "
        f"{singles} non-mated probes (leave-one-out, gallery of {searches.gallery})"
    )
    print(f"rank-1         {np.mean(searches.top_is_mate):.2%} of mated probes; misses:")
    for miss in searches.misses:
        print(f"  {miss}")
    threshold = threshold_at_fmr(searches.nonmated_best, FPIR_TARGET)
    print(
        f"FNIR           {fnir(searches, threshold):.2%} at FPIR {fpir(searches, threshold):.2%}"
        f" (target {FPIR_TARGET:.0%}, threshold {threshold:.4f})"
    )


def print_operating_points(embedded: Embedded, searches: Searches) -> None:
    genuine, impostor = pair_scores(embedded.vectors, embedded.labels)
    print(
        f"\nthe bundled model's per-pair points on the same data ({len(genuine):,} genuine, "
        f"{len(impostor):,} impostor pairs; optimistic: calibrated on these pairs)"
    )
    print(
        f"{'FMR target':>10} {'threshold':>9} {'FMR seen':>9} {'FNMR':>7} {'FPIR':>7} {'FNIR':>7}"
    )
    for fmr, threshold in OPERATING_POINTS.items():
        seen = float(np.mean(impostor >= threshold))
        miss = float(np.mean(genuine < threshold))
        print(
            f"{fmr:>10g} {threshold:>9.4f} {seen:>9.2e} {miss:>7.2%} "
            f"{fpir(searches, threshold):>7.2%} {fnir(searches, threshold):>7.2%}"
        )


def print_split_half(embedded: Embedded, splits: int) -> None:
    observed = split_half(embedded, splits)
    print(
        f"\nsplit-half: calibrated on half the people, observed on the other half "
        f"({splits} random splits x 2 directions): median [min-max]"
    )
    print(f"{'FMR target':>10} {'FMR observed':>30} {'FNMR observed':>26}")
    for fmr, rows in observed.items():
        fmrs, fnmrs = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        print(
            f"{fmr:>10g} {np.median(fmrs):>9.2e} [{fmrs.min():.2e}-{fmrs.max():.2e}] "
            f"{np.median(fnmrs):>7.2%} [{fnmrs.min():.2%}-{fnmrs.max():.2%}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "lfw-devtest")
    parser.add_argument("--splits", type=int, default=5, help="random split-half repetitions")
    args = parser.parse_args()
    settings = CoreSettings.from_env()
    models = FaceModels(settings.models)
    start = time.perf_counter()
    embedded = embed_people(args.data, models, settings)
    searches = search_all(embedded)
    print_identification(embedded, searches)
    print_operating_points(embedded, searches)
    print_split_half(embedded, args.splits)
    print(f"\ntotal {time.perf_counter() - start:.1f} s (model loading not counted)")


if __name__ == "__main__":
    main()
