"""Operating points measured on labelled data (see README, "Accuracy"), and the decision every
match carries.

``LFW_THRESHOLD`` is the cosine similarity that ``facesearch eval lfw`` chose on LFW View 1 test
(deep-funneled, 1,000 pairs, ../shared/data/faces/lfw-devtest) with the bundled buffalo_s models:
the threshold that maximises verification accuracy over all pairs. Two faces at or above it are
called the same person. ``compare``'s default tolerance is the same point as a distance.

``OPERATING_POINTS`` maps a false-match rate (FMR: the fraction of different-person pairs that
score at or above the threshold) to the threshold that keeps it. Measured with the bundled
buffalo_s models (``w600k_mbf``) on every pair of the 1,549 lfw-devtest images (central face):
983 same-person and 1,197,943 different-person pairs of 963 people, no image without a face,
on 2026-11-26::

    .venv/bin/facesearch calibrate ../shared/data/faces/lfw-devtest --json

The thresholds are rounded up to 4 decimals, so each keeps its FMR on that data. They were
calibrated and evaluated on the same people: on people not seen, expect the FMR to move
(bench/identification.py calibrates on half the people and measures on the other half).

``FACESEARCH_CALIBRATION`` (``CoreSettings.calibration``) names a JSON file written by
``facesearch calibrate --write`` whose points replace these, for data (or a model) unlike LFW;
``points_for`` loads it once, where a process starts (the CLI's backend, the gateway).
"""

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from facesearch.errors import ConfigError

LFW_THRESHOLD = 0.253

FMRS = (1e-2, 1e-3, 1e-4)
OPERATING_POINTS: dict[float, float] = {1e-2: 0.1664, 1e-3: 0.2286, 1e-4: 0.2834}

# A search compares a probe with every face of a gallery, so a stranger's chance of some false
# "match" grows with the gallery: with the 962-photo gallery of bench/identification.py, 56% of
# strangers had a candidate at or above the 1e-3 point, 9.5% above the 1e-4 one. So "match" is
# the 1e-4 point (FNMR about 1%); the 1e-3 point only earns "possible", worth a human look.
MATCH_FMR = 1e-4
POSSIBLE_FMR = 1e-3
CALIBRATION_VARIABLE = "FACESEARCH_CALIBRATION"

Decision = Literal["match", "possible", "no_match"]


def similarity_to_distance(similarity: float) -> float:
    """Cosine distance, the scale ``compare --tolerance`` speaks (lower is more alike)."""
    return 1.0 - similarity


DEFAULT_TOLERANCE = round(similarity_to_distance(LFW_THRESHOLD), 3)


@dataclass(frozen=True)
class OperatingPoint:
    fmr: float  # the false-match rate asked for
    threshold: float  # the lowest score that keeps it
    fnmr: float  # same-person pairs scoring below the threshold
    impostors_above: int  # different-person pairs at or above it (at most fmr * impostors)

    def as_json(self) -> dict[str, float | int | None]:
        return {
            "fmr": self.fmr,
            "threshold": self.threshold,
            "fnmr": None if math.isnan(self.fnmr) else self.fnmr,  # no genuine pair: unknown
            "impostors_above": self.impostors_above,
        }


def pair_scores(
    vectors: np.ndarray, labels: Sequence[str] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every same-label (genuine) and every different-label (impostor) pair of
    L2-normalised rows, each unordered pair once. Blocks of rows keep memory at a block times
    the images, not the square of the images."""
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    vectors = np.asarray(vectors, dtype=np.float32)
    genuine, impostor = [], []
    columns = np.arange(len(codes))
    for start in range(0, len(codes), 512):
        rows = columns[start : start + 512]
        scores = vectors[rows] @ vectors.T
        upper = columns[None, :] > rows[:, None]
        same = codes[rows][:, None] == codes[None, :]
        genuine.append(scores[upper & same])
        impostor.append(scores[upper & ~same])
    empty = np.empty(0, np.float32)
    return np.concatenate(genuine or [empty]), np.concatenate(impostor or [empty])


def threshold_at_fmr(impostor: np.ndarray, fmr: float) -> float:
    """The smallest score t such that the fraction of impostor scores >= t is at most ``fmr``:
    just above the (k+1)-th highest impostor score, k = floor(fmr * impostors)."""
    if len(impostor) == 0:
        raise ValueError("no impostor pairs to calibrate on")
    scores = np.asarray(impostor)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    ordered = np.sort(scores)[::-1]
    allowed = math.floor(fmr * len(ordered))
    if allowed >= len(ordered):
        return float(ordered[-1])  # every pair may be accepted
    # The next number up in the scores' own precision: NumPy compares float32 scores with a
    # Python float in float32, where a float64 step above the score would round back onto it.
    return float(np.nextafter(ordered[allowed], np.array(np.inf, dtype=ordered.dtype)))


def operating_points(
    genuine: np.ndarray, impostor: np.ndarray, fmrs: Sequence[float] = FMRS
) -> list[OperatingPoint]:
    """Threshold, false non-match rate and impostors above it, for each false-match rate."""
    points = []
    for fmr in fmrs:
        threshold = threshold_at_fmr(impostor, fmr)
        fnmr = float(np.mean(genuine < threshold)) if len(genuine) else float("nan")
        above = int(np.count_nonzero(impostor >= threshold))
        points.append(OperatingPoint(fmr, threshold, fnmr, above))
    return points


def decide(score: float, points: Mapping[float, float]) -> Decision:
    """ "match" at or above the MATCH_FMR threshold of ``points``, "possible" at or above the
    POSSIBLE_FMR one, else "no_match"."""
    if score >= points[MATCH_FMR]:
        return "match"
    if score >= points[POSSIBLE_FMR]:
        return "possible"
    return "no_match"


def points_for(calibration: Path | None) -> dict[float, float]:
    """The operating points of a ``calibrate --write`` file (FACESEARCH_CALIBRATION), else
    OPERATING_POINTS."""
    return OPERATING_POINTS if calibration is None else load_points(calibration)


def load_points(path: Path) -> dict[float, float]:
    """Thresholds by FMR from a ``calibrate --write`` file; ConfigError naming the variable if
    it cannot be read or lacks the points decide() needs."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{CALIBRATION_VARIABLE}={path}: {why}")

    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise bad(f"cannot read it ({exc.strerror})") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"not JSON ({exc})") from exc
    try:
        points = {float(p["fmr"]): float(p["threshold"]) for p in data["operating_points"]}
    except (TypeError, KeyError, ValueError) as exc:
        raise bad("expected {'operating_points': [{'fmr': F, 'threshold': T}, ...]}") from exc
    _check(points, bad)
    return points


def _check(points: dict[float, float], bad: Callable[[str], ConfigError]) -> None:
    missing = [f for f in (MATCH_FMR, POSSIBLE_FMR) if f not in points]
    if missing:
        raise bad(f"no threshold for FMR {', '.join(f'{f:g}' for f in missing)}")
    if not all(math.isfinite(t) and -1.0 <= t <= 1.0 for t in points.values()):
        raise bad("thresholds must be cosine similarities between -1 and 1")
    if points[MATCH_FMR] < points[POSSIBLE_FMR]:
        raise bad("the threshold for a lower FMR must not be below that for a higher one")


def write_points(
    path: Path, points: Sequence[OperatingPoint], details: Mapping[str, object]
) -> None:
    """Save operating points as FACESEARCH_CALIBRATION reads them, with what they came from."""
    body = {"operating_points": [p.as_json() for p in points], **details}
    try:
        path.write_text(json.dumps(body, indent=2) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc
