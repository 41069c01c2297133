"""LFW pairs files and the verification protocol: 10-fold accuracy with the threshold chosen on
the other nine folds, and the true-accept rate at a fixed false-accept rate."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesearch.errors import ConfigError

FOLDS = 10


@dataclass(frozen=True)
class Pair:
    left: str  # path relative to the LFW root
    right: str
    same: bool
    fold: int


def lfw_file(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_pairs(path: Path) -> list[Pair]:
    """Both header styles: ``N`` (View 1: N same pairs, then N different, no folds; folds are
    made by stratifying, pair i of each kind to fold i mod 10) and ``F<TAB>N`` (View 2: F folds,
    each N same then N different)."""
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"cannot read pairs file {path}: {exc.strerror}") from exc
    if not lines or not all(part.isdigit() for part in lines[0]) or len(lines[0]) > 2:
        raise ConfigError(f"{path}: first line must be 'N' or 'FOLDS<TAB>N'")
    folds, per_kind = (1, int(lines[0][0])) if len(lines[0]) == 1 else map(int, lines[0])
    body = lines[1:]
    if len(body) != 2 * folds * per_kind:
        raise ConfigError(
            f"{path}: header promises {2 * folds * per_kind} pairs, found {len(body)}"
        )
    pairs = []
    for position, fields in enumerate(body):
        block, offset = divmod(position, 2 * per_kind)
        same = offset < per_kind
        index_in_kind = offset if same else offset - per_kind
        fold = block if folds > 1 else index_in_kind % FOLDS
        pairs.append(_pair(fields, same, fold, path, position + 2))
    return pairs


def _pair(fields: list[str], same: bool, fold: int, path: Path, line: int) -> Pair:
    if len(fields) != (3 if same else 4):
        kind = "same-person (NAME N1 N2)" if same else "different-person (NAME1 N1 NAME2 N2)"
        raise ConfigError(f"{path}:{line}: expected a {kind} pair")
    names, numbers = ([fields[0]] * 2, fields[1:]) if same else (fields[0::2], fields[1::2])
    if not all(n.isdigit() for n in numbers):
        raise ConfigError(f"{path}:{line}: image numbers must be whole numbers")
    return Pair(lfw_file(names[0], numbers[0]), lfw_file(names[1], numbers[1]), same, fold)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The similarity threshold (accept when score >= it) with the highest accuracy; midpoints
    between neighbouring scores, so the choice does not sit on a sample."""
    ordered = np.unique(scores)
    candidates = np.concatenate(
        ([ordered[0] - 1e-6], (ordered[:-1] + ordered[1:]) / 2, [ordered[-1] + 1e-6])
    )
    accepted = scores[None, :] >= candidates[:, None]
    accuracy = (accepted == same[None, :]).mean(axis=1)
    return float(candidates[int(np.argmax(accuracy))])


def accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(((scores >= threshold) == same).mean())


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of per-fold accuracy; each fold's threshold is chosen on the
    other folds."""
    results = []
    for fold in np.unique(folds):
        train = folds != fold
        threshold = best_threshold(scores[train], same[train])
        results.append(accuracy(scores[~train], same[~train], threshold))
    return float(np.mean(results)), float(np.std(results))


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> tuple[float, float]:
    """True-accept rate at the lowest threshold whose false-accept rate is at most ``far``."""
    impostors = np.sort(scores[~same])[::-1]
    allowed = int(np.floor(far * len(impostors)))
    threshold = (
        float(np.nextafter(impostors[allowed], np.inf))
        if allowed < len(impostors)
        else float(impostors[-1])
    )
    return float((scores[same] >= threshold).mean()), threshold
