"""Opt-out by face on lfw-devtest: are the people who opted out gone, and what does it cost
everyone else?

Every lfw-devtest photo's central face, and every face of the other folders' images (no
person), is embedded once (bench/results cache, as scale.py and open_set.py). The people with
two or more photos are split at random into two halves; each half in turn opts out, each person
with their first photo (by file name), while the other half is "everyone else". Search is exact
(NumPy), leave-one-out: every face is a query against all the others, and a face is "returned"
when it scores at or above the `match` threshold of that gallery (``calibration.LFW``). The
opt-out rules are the product's: ``optout.optout_threshold`` and ``OptOutGallery``.

For the other photos of the people who opted out (never the opt-out photo itself), how many are
still returned to any query, in three states of the index:

- ``ingest``: the opt-outs made first, then every face indexed (a face matching one is kept
  out, ``screen_records``); a query face matching one gets no results (``withhold``);
- ``query``: every face indexed and none erased (a replica that indexed them before its copy
  of the gallery was read again): only the queries are withheld. Counted: their photos returned
  to a search with one of their own photos;
- ``before``: every face indexed, then the opt-outs added one by one, each erasing what
  matches it at the threshold of the gallery as it then was (``erase_matching``), queries
  withheld.

Everyone else: rank-1 (the best other face is of the same person) of their photos before the
opt-outs and after (``ingest``; a withheld query counts as a miss), and how many of their faces
were kept out of the index. Target (issue 14): 0 returned in each state; rank-1 down by at most
0.5 points.

    .venv/bin/python bench/optout.py [--data ../shared/data/faces] [--seed 0]

It prints a line per fold, then the totals, then one JSON object.
"""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import DEFAULT_DATA
from facesearch.calibration import LFW
from facesearch.models import FaceModels
from facesearch.optout import OPTOUT_FPIR, OptOutGallery, optout_threshold
from facesearch.settings import CoreSettings
from scale import Real, real_faces


@dataclass(frozen=True)
class Fold:
    opted: np.ndarray  # rows of the opt-out photos
    others_of_opted: np.ndarray  # rows of the other photos of the people who opted out
    everyone_else: np.ndarray  # rows of the photos of the people with 2+ who did not


def folds(real: Real, seed: int) -> list[Fold]:
    labelled = np.flatnonzero(real.person >= 0)
    counts = np.bincount(real.person[labelled])
    first: dict[int, int] = {}
    for row in labelled:
        first.setdefault(int(real.person[row]), int(row))
    people = np.array(sorted(p for p in first if counts[p] >= 2))
    shuffled = np.random.default_rng(seed).permutation(people)
    halves = [shuffled[: len(people) // 2], shuffled[len(people) // 2 :]]
    made = []
    for opting, staying in (halves, halves[::-1]):
        opted = np.array(sorted(first[int(p)] for p in opting))
        mine = np.isin(real.person, opting)
        mine[opted] = False
        made.append(
            Fold(opted, np.flatnonzero(mine), np.flatnonzero(np.isin(real.person, staying)))
        )
    return made


def returned(scores: np.ndarray, stored: np.ndarray, asking: np.ndarray, match: float) -> set[int]:
    """Rows of stored faces that some asking query (never itself) scores ``match`` or more."""
    found = scores[np.ix_(asking, stored)] >= match
    found[asking[:, None] == stored[None, :]] = False
    return {int(r) for r in stored[found.any(axis=0)]}


def erased_one_by_one(vectors: np.ndarray, opted: np.ndarray, fpir: float) -> np.ndarray:
    """Rows the opt-outs erase when added one at a time (each at the threshold of the gallery
    of opt-outs as it then was), as ``optout.add_optout`` does on an indexed store."""
    gone = np.zeros(len(vectors), bool)
    for made, row in enumerate(opted, start=1):
        gone |= vectors @ vectors[row] >= optout_threshold(LFW, made, fpir)
    return gone


def rank1(
    scores: np.ndarray,
    person: np.ndarray,
    probes: np.ndarray,
    gallery: np.ndarray,
    withheld: np.ndarray | None = None,
) -> float:
    """Share of probes whose best other face of ``gallery`` is of their person (leave-one-out);
    a probe ``withheld`` (a query face matching an opt-out) gets no answer: a miss."""
    sub = scores[np.ix_(probes, gallery)].copy()
    sub[probes[:, None] == gallery[None, :]] = -np.inf
    hit = person[gallery[np.argmax(sub, axis=1)]] == person[probes]
    if withheld is not None:
        hit &= ~withheld[probes]
    return float(np.mean(hit))


def measure(real: Real, fold: Fold, scores: np.ndarray, fpir: float) -> dict[str, Any]:
    vectors, person = real.vectors, real.person
    rows = np.arange(len(vectors))
    gallery = OptOutGallery(vectors[fold.opted], optout_threshold(LFW, len(fold.opted), fpir))
    matching = gallery.matching(vectors)  # kept out at ingest, and withheld as queries
    match = LFW.decisions(len(vectors) - 1).match_threshold
    asking, mine = rows[~matching], fold.others_of_opted
    ingest = returned(scores, rows[~matching], asking, match) & set(mine.tolist())
    # Their own photos as queries, against an index that still holds everything.
    query = returned(scores, mine, mine[~matching[mine]], match)
    erased = erased_one_by_one(vectors, fold.opted, fpir)
    before = returned(scores, rows[~erased], asking, match) & set(mine.tolist())
    probes = fold.everyone_else
    return {
        "opted_out_people": len(fold.opted),
        "their_other_photos": len(mine),
        "optout_threshold": round(gallery.threshold, 4),
        "match_threshold": round(match, 4),
        "caught": int(matching[mine].sum()),
        "returned_ingest": len(ingest),
        "returned_query": len(query),
        "returned_before": len(before),
        "returned_rows": sorted(ingest | query | before),
        "others_probes": len(probes),
        "others_rank1_before": rank1(scores, person, probes, rows),
        "others_rank1_after": rank1(scores, person, probes, rows[~matching], matching),
        "others_kept_out": int(matching[probes].sum()),
        "strangers_kept_out": int(matching[person < 0].sum()),
        "strangers": int((person < 0).sum()),
    }


def total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The folds together: counts added, rank-1 over all their probes."""
    summed = {k: sum(r[k] for r in rows) for k in rows[0] if isinstance(rows[0][k], int)}
    probes = summed["others_probes"]
    for key in ("others_rank1_before", "others_rank1_after"):
        summed[key] = sum(r[key] * r["others_probes"] for r in rows) / probes
    summed["rank1_drop_points"] = 100 * (
        summed["others_rank1_before"] - summed["others_rank1_after"]
    )
    return summed


def describe(name: str, row: dict[str, Any]) -> str:
    drop = 100 * (row["others_rank1_before"] - row["others_rank1_after"])
    return (
        f"{name}: {row['opted_out_people']} people opted out, {row['their_other_photos']} other "
        f"photos of theirs, {row['caught']} caught; returned above the match threshold: "
        f"{row['returned_ingest']} at ingest, {row['returned_query']} at query, "
        f"{row['returned_before']} indexed before | everyone else ({row['others_probes']} "
        f"photos): rank-1 {100 * row['others_rank1_before']:.2f}% -> "
        f"{100 * row['others_rank1_after']:.2f}% (-{drop:.2f} points), "
        f"{row['others_kept_out']} kept out; strangers kept out "
        f"{row['strangers_kept_out']}/{row['strangers']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fpir",
        type=float,
        default=OPTOUT_FPIR,
        help="other people's faces allowed to match an opt-out (the product's OPTOUT_FPIR)",
    )
    args = parser.parse_args()
    settings = CoreSettings()
    real = real_faces(args.data, FaceModels(settings.models), settings)
    scores = real.vectors @ real.vectors.T
    rows = [measure(real, fold, scores, args.fpir) for fold in folds(real, args.seed)]
    for number, row in enumerate(rows, start=1):
        print(describe(f"fold {number}", row))
        for face in row["returned_rows"]:
            print(f"  returned: face {face} (person {real.person[face]})")
    summed = total(rows)
    print(describe("total", summed))
    print(json.dumps({"folds": rows, "total": summed, "seed": args.seed, "fpir": args.fpir}))


if __name__ == "__main__":
    main()
