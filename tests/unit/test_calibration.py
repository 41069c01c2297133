"""Threshold selection, pair scores, decisions and calibration files, on hand-checked cases."""

import json
from pathlib import Path

import numpy as np
import pytest

from facesearch.calibration import (
    CALIBRATION_VARIABLE,
    FMRS,
    LFW_THRESHOLD,
    MATCH_FMR,
    OPERATING_POINTS,
    POSSIBLE_FMR,
    decide,
    load_points,
    operating_points,
    pair_scores,
    points_for,
    threshold_at_fmr,
    write_points,
)
from facesearch.errors import ConfigError
from facesearch.settings import CoreSettings


def up(value: float, dtype: type = np.float64) -> float:
    """The next number above ``value`` in the precision of the scores."""
    return float(np.nextafter(dtype(value), dtype(np.inf)))


def test_threshold_lets_through_at_most_the_allowed_fraction() -> None:
    impostor = np.arange(1000, dtype=np.float64) / 1000  # 0.000 ... 0.999

    # FMR 1e-2 of 1,000 pairs allows 10 at or above: 0.990 ... 0.999; 0.989 must be below.
    assert threshold_at_fmr(impostor, 1e-2) == up(0.989)
    assert threshold_at_fmr(impostor, 1e-3) == up(0.998)
    # 1e-4 of 1,000 allows none: just above the highest impostor score.
    assert threshold_at_fmr(impostor, 1e-4) == up(0.999)


def test_threshold_is_the_smallest_that_keeps_the_rate() -> None:
    impostor = np.array([0.1, 0.5, 0.3, 0.9, 0.7, 0.2, 0.4, 0.6, 0.8, 0.0])

    threshold = threshold_at_fmr(impostor, 0.2)  # 2 of 10 allowed: 0.9 and 0.8

    assert threshold == up(0.7)
    assert np.mean(impostor >= threshold) == 0.2
    assert np.mean(impostor >= 0.7) > 0.2  # the score just below lets through too many


def test_ties_at_the_cut_are_all_rejected() -> None:
    impostor = np.array([0.5, 0.5, 0.5, 0.1])

    threshold = threshold_at_fmr(impostor, 0.5)  # 2 allowed, but 3 share the score 0.5

    assert threshold == up(0.5)
    assert np.count_nonzero(impostor >= threshold) == 0


def test_float32_scores_are_cut_in_float32() -> None:
    impostor = np.array([0.3, 0.2, 0.1], dtype=np.float32)

    threshold = threshold_at_fmr(impostor, 0.0)

    assert threshold == up(0.3, np.float32)
    assert np.count_nonzero(impostor >= threshold) == 0  # compared in float32 by NumPy


def test_no_impostor_pair_is_an_error() -> None:
    with pytest.raises(ValueError, match="no impostor pairs"):
        threshold_at_fmr(np.array([]), 1e-2)


def test_operating_points_report_fnmr_and_impostors_above() -> None:
    impostor = np.arange(100, dtype=np.float64) / 100  # 0.00 ... 0.99
    genuine = np.array([0.5, 0.95, 0.99, 1.0])

    (point,) = operating_points(genuine, impostor, [0.02])

    assert point.threshold == up(0.97)
    assert point.impostors_above == 2
    assert point.fnmr == 0.5  # 0.5 and 0.95 fall below
    assert operating_points(genuine, impostor)[0].fmr == FMRS[0]


def test_pair_scores_split_every_pair_once_by_label() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    labels = ["a", "a", "b", "c"]

    genuine, impostor = pair_scores(vectors, labels)

    assert genuine.tolist() == [1.0]  # (0, 1)
    # (0,2) (0,3) (1,2) (1,3) (2,3)
    assert sorted(impostor.tolist()) == pytest.approx([0.0, 0.0, 0.6, 0.6, 0.8])


def test_pair_scores_across_row_blocks() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1100, 8)).astype(np.float32)
    labels = [str(i // 3) for i in range(1100)]

    genuine, impostor = pair_scores(vectors, labels)

    full = vectors @ vectors.T
    upper = np.triu_indices(1100, 1)
    same = np.array(labels)[upper[0]] == np.array(labels)[upper[1]]
    assert len(genuine) == same.sum() == 366 * 3 + 1  # 366 triples and one pair
    assert len(impostor) == (~same).sum()
    assert np.sort(impostor) == pytest.approx(np.sort(full[upper][~same]), abs=1e-5)


@pytest.mark.parametrize(
    ("score", "decision"),
    [
        (0.5, "match"),
        (0.49999, "possible"),
        (0.3, "possible"),
        (0.2999, "no_match"),
        (-1.0, "no_match"),
    ],
)
def test_decide_at_the_boundaries(score: float, decision: str) -> None:
    points = {MATCH_FMR: 0.5, POSSIBLE_FMR: 0.3}

    assert decide(score, points) == decision


def test_decide_uses_the_measured_points_by_default() -> None:
    points = points_for(CoreSettings.from_env({}).calibration)

    assert decide(OPERATING_POINTS[MATCH_FMR], points) == "match"
    assert decide(OPERATING_POINTS[POSSIBLE_FMR], points) == "possible"
    assert decide(OPERATING_POINTS[POSSIBLE_FMR] - 1e-4, points) == "no_match"


def test_measured_points_tighten_as_the_rate_falls() -> None:
    thresholds = [OPERATING_POINTS[f] for f in sorted(OPERATING_POINTS, reverse=True)]

    assert thresholds == sorted(thresholds)
    assert set(OPERATING_POINTS) == set(FMRS)


def test_a_written_file_is_what_the_variable_loads(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    genuine = np.array([0.9, 0.8])
    impostor = np.arange(100_000, dtype=np.float64) / 200_000  # 0 ... 0.5
    write_points(path, operating_points(genuine, impostor), {"model": "m"})

    points = points_for(CoreSettings.from_env({CALIBRATION_VARIABLE: str(path)}).calibration)

    assert points == load_points(path)
    assert sorted(points) == sorted(FMRS)
    assert points[1e-2] == up(98_999 / 200_000)  # the 1,001st highest of 0 ... 99,999 / 200,000
    assert json.loads(path.read_text())["model"] == "m"
    assert decide(0.49995, points) == "match"  # above the 11th highest
    assert decide(0.4996, points) == "possible"  # above the 101st
    assert decide(0.496, points) == "no_match"


def test_without_the_variable_the_measured_points_are_active() -> None:
    assert points_for(CoreSettings.from_env({}).calibration) == OPERATING_POINTS


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("not json", "not JSON"),
        ('{"points": []}', "expected {'operating_points'"),
        ('{"operating_points": [{"fmr": 0.01}]}', "expected {'operating_points'"),
        ('{"operating_points": [{"fmr": 0.01, "threshold": 0.2}]}', "no threshold for FMR"),
        (
            '{"operating_points": [{"fmr": 0.001, "threshold": 2}, '
            '{"fmr": 0.0001, "threshold": 3}]}',
            "between -1 and 1",
        ),
        (
            '{"operating_points": [{"fmr": 0.001, "threshold": 0.5}, '
            '{"fmr": 0.0001, "threshold": 0.4}]}',
            "must not be below",
        ),
    ],
)
def test_a_bad_file_is_a_config_error_naming_the_variable(
    tmp_path: Path, content: str, why: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)

    with pytest.raises(ConfigError, match=CALIBRATION_VARIABLE) as error:
        load_points(path)

    assert why in str(error.value)
    assert str(path) in str(error.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{CALIBRATION_VARIABLE}=.*cannot read it"):
        points_for(
            CoreSettings.from_env({CALIBRATION_VARIABLE: str(tmp_path / "absent.json")}).calibration
        )


def test_search_default_threshold_never_hides_a_match() -> None:
    # search lists scores from LFW_THRESHOLD up by default: every "match" must be among them.
    assert OPERATING_POINTS[MATCH_FMR] >= LFW_THRESHOLD
