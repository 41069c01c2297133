"""What a score means: the decision every match carries, calibrated for the gallery it was
found in.

A search compares a query face with every face of a gallery, so a stranger's chance of some
false "match" grows with the gallery: a per-pair threshold that errs once in 10,000 pairs names
nearly every stranger in a gallery of a million. Decisions here are open-set, as NIST FRTE 1:N
reports them: ``match`` is the lowest score at which a search for someone who is not in the
gallery returns a match at most ``MATCH_FPIR`` of the time (FPIR, the false-positive
identification rate), ``possible`` the same for ``POSSIBLE_FPIR``, for the number of faces the
search ran against (``Calibration.decisions``).

The model (``ImpostorTail``): the scores of different-person pairs of labelled photos give the
per-pair false-match rate FMR(t) = P(impostor score >= t), empirically in the body and, beyond
the top ``TAIL_FRACTION`` (0.1%) of the scores, as a generalised Pareto distribution fitted to them
(the extreme-value law of a tail), which reaches rates far below one over the pairs seen. A
stranger searched against N faces is falsely matched when any of the N scores reaches t:
FPIR(t, N) = 1 - (1 - FMR(t))^N, treating the N scores as independent. On lfw-devtest a
stranger's scores vary little from one stranger to another (mean 0.006 +- 0.005 against a
spread of 0.066), and with the model fitted on half the people, the other half's FPIR seen is
within 2x of the target from 100 to 1,500 faces (bench/open_set.py, ``real_only``). A decision
never goes below its per-pair floor (``MATCH_FMR``, ``POSSIBLE_FMR``): for a gallery of a few
faces the FPIR it stands for is then lower than asked.

``LFW`` is fitted with the bundled buffalo_s models (``w600k_mbf``) on every pair of the 1,549
lfw-devtest images (central face): 983 same-person and 1,197,943 different-person pairs of 963
people, on 2026-12-06::

    .venv/bin/facesearch calibrate ../shared/data/faces/lfw-devtest --json

``FACESEARCH_CALIBRATION`` (``CoreSettings.calibration``) names a file written by ``facesearch
calibrate --write`` that replaces it, for data or a model unlike LFW; ``calibration_for`` loads
it once, where a process starts (the CLI's backend, the gateway), and refuses a malformed file
or one made for another model.

``LFW_THRESHOLD`` is the cosine similarity that ``facesearch eval lfw`` chose on LFW View 1 test
(1,000 pairs): the threshold that maximises verification accuracy over all pairs; ``compare
--gateway``'s 1:1 Compare calls and ``eval`` speak it.
"""

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import stats

from facesearch.errors import ConfigError

LFW_THRESHOLD = 0.253

FMRS = (1e-2, 1e-3, 1e-4)  # the per-pair operating points calibrate reports
MATCH_FPIR = 0.01  # "match": at most 1 search in 100 for a stranger returns one
POSSIBLE_FPIR = 0.10  # "possible": worth a human look; 1 stranger in 10 gets one
# Floors: no decision is taken below these per-pair rates, however small the gallery (the 1e-4
# point keeps FNMR about 1% on lfw-devtest).
MATCH_FMR = 1e-4
POSSIBLE_FMR = 1e-3
# The share of the impostor scores the Pareto tail is fitted to. Checked where the truth is
# known far out (bench/open_set.py's drawn distractors, 6e8 scores): fitted to the top 0.1% of
# 6e7 scores, the threshold at FMR 1e-8 came out 0.3802 against 0.3801 seen; fitted to the
# top 1%, 0.3644 (a tail too light, FPIR 8x its target at 10^6 faces).
TAIL_FRACTION = 1e-3
MIN_TAIL_PAIRS = 100  # with fewer than 100 / TAIL_FRACTION pairs, the top 100 are used
MIN_IMPOSTOR_PAIRS = 500
# Empirical quantiles kept above the tail.
BODY_FMRS = (0.999, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002)
CALIBRATION_VARIABLE = "FACESEARCH_CALIBRATION"

Decision = Literal["match", "possible", "no_match"]


def similarity_to_distance(similarity: float) -> float:
    """Cosine distance, the scale ``compare --tolerance`` speaks (lower is more alike)."""
    return 1.0 - similarity


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


@dataclass(frozen=True)
class ImpostorTail:
    """FMR(t), the share of different-person pairs scoring t or more: linear in log FMR between
    empirical quantiles (``body``: (fmr, threshold), FMR falling) down to ``fraction``, whose
    threshold is ``start``; beyond it a generalised Pareto law of shape ``shape`` and scale
    ``scale`` fitted to the scores above ``start``."""

    body: tuple[tuple[float, float], ...]
    start: float
    fraction: float
    shape: float
    scale: float
    pairs: int  # impostor pairs it was fitted on

    def fmr(self, threshold: float) -> float:
        if threshold >= self.start:
            excess = (threshold - self.start) / self.scale
            if self.shape == 0.0:
                return self.fraction * math.exp(-excess)
            base = 1.0 + self.shape * excess
            return 0.0 if base <= 0.0 else self.fraction * base ** (-1.0 / self.shape)
        fmrs, thresholds = self._knots()
        if threshold < thresholds[0]:
            return 1.0
        return float(np.exp(np.interp(threshold, thresholds, np.log(fmrs))))

    def threshold(self, fmr: float) -> float:
        """The lowest score whose FMR is at most ``fmr`` (0 < fmr <= 1)."""
        if fmr <= self.fraction:
            ratio = fmr / self.fraction
            if self.shape == 0.0:
                return self.start - self.scale * math.log(ratio)
            return self.start + self.scale * (float(ratio ** (-self.shape)) - 1.0) / self.shape
        fmrs, thresholds = self._knots()
        return float(np.interp(-math.log(fmr), -np.log(fmrs), thresholds))

    def _knots(self) -> tuple[np.ndarray, np.ndarray]:
        """The body's FMRs and thresholds down to the tail's start, scores rising."""
        points = [*self.body, (self.fraction, self.start)]
        return np.array([p[0] for p in points]), np.array([p[1] for p in points])

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "body": [list(point) for point in self.body]}


def fit_tail(impostor: np.ndarray) -> ImpostorTail:
    """The ``ImpostorTail`` of these impostor scores: the Pareto law fitted (maximum likelihood)
    to the top ``TAIL_FRACTION`` of them, or to the top ``MIN_TAIL_PAIRS`` where that is more."""
    scores = np.sort(np.asarray(impostor, dtype=np.float64))
    if len(scores) < MIN_IMPOSTOR_PAIRS:
        raise ConfigError(
            f"{len(scores)} different-person pairs are too few to model how often strangers "
            f"score high: calibrate on at least {MIN_IMPOSTOR_PAIRS} (photos of 32 people or "
            "more), better 10,000 or more"
        )
    fraction = max(TAIL_FRACTION, MIN_TAIL_PAIRS / len(scores))
    start = float(np.quantile(scores, 1.0 - fraction))
    shape, _, scale = stats.genpareto.fit(scores[scores > start] - start, floc=0.0)
    body = tuple((f, float(np.quantile(scores, 1.0 - f))) for f in BODY_FMRS if f > fraction)
    return ImpostorTail(body, start, fraction, float(shape), float(scale), len(scores))


@dataclass(frozen=True)
class Decisions:
    """The thresholds of one search's decisions, for the gallery it ran against, and the FPIR
    each stands for there (the model's prediction; below the target where a floor holds)."""

    gallery_faces: int
    match_threshold: float
    possible_threshold: float
    match_fpir: float
    possible_fpir: float

    def decide(self, score: float) -> Decision:
        if score >= self.match_threshold:
            return "match"
        if score >= self.possible_threshold:
            return "possible"
        return "no_match"

    def as_json(self) -> dict[str, float | int]:
        return {
            "gallery_faces": self.gallery_faces,
            "match_threshold": round(self.match_threshold, 4),
            "possible_threshold": round(self.possible_threshold, 4),
            "match_fpir": float(f"{self.match_fpir:.3g}"),
            "possible_fpir": float(f"{self.possible_fpir:.3g}"),
        }


@dataclass(frozen=True)
class Calibration:
    """An impostor tail for one embedding model, and the FPIRs decisions are taken at."""

    model: str
    tail: ImpostorTail
    match_fpir: float = MATCH_FPIR
    possible_fpir: float = POSSIBLE_FPIR
    source: str = ""  # where it was read from, for messages

    def fpir(self, threshold: float, gallery_faces: int) -> float:
        """The share of searches for strangers in a gallery of that size with a score at or
        above ``threshold``: 1 - (1 - FMR)^N."""
        fmr = min(self.tail.fmr(threshold), 1.0 - 1e-12)
        return -math.expm1(max(1, gallery_faces) * math.log1p(-fmr))

    def threshold_for(self, fpir: float, gallery_faces: int) -> float:
        """The lowest threshold that keeps FPIR at most ``fpir`` in a gallery of that size."""
        return self.tail.threshold(-math.expm1(math.log1p(-fpir) / max(1, gallery_faces)))

    def decisions(self, gallery_faces: int) -> Decisions:
        match = max(
            self.threshold_for(self.match_fpir, gallery_faces), self.tail.threshold(MATCH_FMR)
        )
        possible = max(
            self.threshold_for(self.possible_fpir, gallery_faces),
            self.tail.threshold(POSSIBLE_FMR),
        )
        return Decisions(
            gallery_faces,
            match,
            possible,
            self.fpir(match, gallery_faces),
            self.fpir(possible, gallery_faces),
        )

    def lowest_possible(self) -> float:
        """The ``possible`` threshold of the smallest gallery: no gallery shows a score below
        it, so a search at it, cut to its gallery's threshold after, misses nothing."""
        return self.decisions(1).possible_threshold

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "impostor_tail": self.tail.as_json(),
            "match_fpir": self.match_fpir,
            "possible_fpir": self.possible_fpir,
        }


def calibration_for(path: Path | None, model: str | None) -> Calibration:
    """The calibration a process takes its decisions from: the file ``FACESEARCH_CALIBRATION``
    names, else ``LFW``. A file that cannot be read, is malformed or was made for another model
    than ``model`` (None: not known in this process) is a ConfigError naming it."""
    if path is None:
        return LFW
    calibration = load_calibration(path)
    if model is not None and calibration.model != model:
        raise ConfigError(
            f"{CALIBRATION_VARIABLE}={path}: made for model {calibration.model!r}, not this "
            f"one ({model!r}); run facesearch calibrate FOLDER --write {path} with this model"
        )
    return calibration


def mismatch(calibration: Calibration, model: str) -> str | None:
    """Why decisions for vectors of ``model`` are not to be trusted, if they are not (the
    bundled calibration with another model pack)."""
    if calibration.model == model:
        return None
    return (
        f"decisions use {calibration.source}, made for model {calibration.model!r}, not "
        f"{model!r}: run facesearch calibrate on labelled photos and set {CALIBRATION_VARIABLE}"
    )


def load_calibration(path: Path) -> Calibration:
    """A ``calibrate --write`` file; ConfigError naming the variable and the file if it cannot
    be read or does not hold a usable model."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{CALIBRATION_VARIABLE}={path}: {why}")

    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise bad(f"cannot read it ({exc.strerror})") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"not JSON ({exc})") from exc
    if not isinstance(data, dict) or "impostor_tail" not in data:
        raise bad(
            "no impostor_tail: not written by facesearch calibrate --write (or by an older "
            "version); run facesearch calibrate FOLDER --write FILE again"
        )
    try:
        raw = data["impostor_tail"]
        tail = ImpostorTail(
            body=tuple((float(f), float(t)) for f, t in raw["body"]),
            start=float(raw["start"]),
            fraction=float(raw["fraction"]),
            shape=float(raw["shape"]),
            scale=float(raw["scale"]),
            pairs=int(raw["pairs"]),
        )
        calibration = Calibration(
            model=str(data["model"]),
            tail=tail,
            match_fpir=float(data["match_fpir"]),
            possible_fpir=float(data["possible_fpir"]),
            source=str(path),
        )
    except (TypeError, KeyError, ValueError) as exc:
        raise bad(f"malformed ({type(exc).__name__}: {exc})") from exc
    _check(calibration, bad)
    return calibration


def _check(calibration: Calibration, bad: Callable[[str], ConfigError]) -> None:
    tail = calibration.tail
    numbers = [
        tail.start,
        tail.fraction,
        tail.shape,
        tail.scale,
        *(v for p in tail.body for v in p),
    ]
    if not all(math.isfinite(v) for v in numbers):
        raise bad("impostor_tail holds a number that is not finite")
    if not (0.0 < tail.fraction < 1.0 and tail.scale > 0.0 and -1.0 < tail.shape < 1.0):
        raise bad("impostor_tail needs 0 < fraction < 1, scale > 0 and -1 < shape < 1")
    fmrs = [f for f, _ in tail.body] + [tail.fraction]
    thresholds = [t for _, t in tail.body] + [tail.start]
    if fmrs != sorted(fmrs, reverse=True) or thresholds != sorted(thresholds):
        raise bad("impostor_tail's body must list FMRs falling and thresholds rising")
    if not all(-1.0 <= t <= 1.0 for t in thresholds):
        raise bad("thresholds must be cosine similarities between -1 and 1")
    if not 0.0 < calibration.match_fpir <= calibration.possible_fpir < 1.0:
        raise bad("it needs 0 < match_fpir <= possible_fpir < 1")


def write_calibration(path: Path, calibration: Calibration, details: Mapping[str, object]) -> None:
    """Save a calibration as FACESEARCH_CALIBRATION reads it, with what it came from."""
    body = {**calibration.as_json(), **details}
    try:
        path.write_text(json.dumps(body, indent=2) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc


# Fitted on lfw-devtest (see the module docstring).
LFW = Calibration(
    model="w600k_mbf-9cc6e4a7",
    tail=ImpostorTail(
        body=(
            (0.999, -0.193655),
            (0.5, 0.005154),
            (0.2, 0.060869),
            (0.1, 0.090750),
            (0.05, 0.116057),
            (0.02, 0.145929),
            (0.01, 0.166374),
            (0.005, 0.185865),
            (0.002, 0.210968),
        ),
        start=0.228509,
        fraction=0.001,
        shape=-0.062823,
        scale=0.025135,
        pairs=1_197_943,
    ),
    source="the bundled LFW calibration",
)
