"""Threshold selection, pair scores, the impostor tail, open-set decisions and calibration files,
on hand-checked cases and on draws from known distributions."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesearch.calibration import (
    CALIBRATION_VARIABLE,
    FMRS,
    LFW,
    MATCH_FMR,
    POSSIBLE_FMR,
    Calibration,
    Decisions,
    ImpostorTail,
    calibration_for,
    fit_tail,
    load_calibration,
    operating_points,
    pair_scores,
    threshold_at_fmr,
    write_calibration,
)
from facesearch.errors import ConfigError


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
    decisions = Decisions(1000, 0.5, 0.3, 0.01, 0.1)

    assert decisions.decide(score) == decision


def exponential_tail() -> ImpostorTail:
    """FMR(t) = 0.01 * exp(-(t - 0.2) / 0.02) above 0.2, and 0.1 at 0.1, 0.5 at 0."""
    return ImpostorTail(((0.5, 0.0), (0.1, 0.1)), 0.2, 0.01, 0.0, 0.02, 10**6)


def test_the_tail_and_its_inverse_agree_in_the_body_and_beyond() -> None:
    tail = exponential_tail()

    assert tail.fmr(0.2) == pytest.approx(0.01)
    assert tail.fmr(0.2 + 0.02 * np.log(10)) == pytest.approx(0.001)
    assert tail.fmr(0.1) == pytest.approx(0.1)
    assert tail.fmr(0.15) == pytest.approx(np.sqrt(0.1 * 0.01))  # linear in log FMR
    assert tail.fmr(-0.5) == 1.0
    for fmr in (0.3, 0.05, 1e-3, 1e-6, 1e-9):
        assert tail.fmr(tail.threshold(fmr)) == pytest.approx(fmr)


def test_a_bounded_tail_gives_nothing_beyond_its_end() -> None:
    tail = ImpostorTail((), 0.2, 0.01, -0.5, 0.05, 10**6)  # ends at 0.2 + 0.05 / 0.5 = 0.3

    assert tail.fmr(0.3) == pytest.approx(0.0, abs=1e-30)
    assert tail.fmr(0.31) == 0.0
    assert tail.fmr(0.25) == pytest.approx(0.01 * 0.5**2)


def test_fpir_grows_with_the_gallery_and_thresholds_follow() -> None:
    calibration = Calibration("m", exponential_tail())
    sizes = [1, 10**3, 10**4, 10**6]

    decisions = [calibration.decisions(n) for n in sizes]

    matches = [d.match_threshold for d in decisions]
    assert matches == sorted(matches) and matches[0] < matches[-1]
    for d in decisions:
        assert d.possible_threshold <= d.match_threshold
    # Above the floors: the FPIR of the threshold is the target; 1 - (1 - FMR)^N.
    big = decisions[-1]
    assert big.match_fpir == pytest.approx(0.01, rel=1e-6)
    assert big.possible_fpir == pytest.approx(0.10, rel=1e-6)
    fmr = exponential_tail().fmr(big.match_threshold)
    assert 1 - (1 - fmr) ** 10**6 == pytest.approx(0.01, rel=1e-6)


def test_small_galleries_keep_the_per_pair_floors() -> None:
    tail = exponential_tail()

    one = Calibration("m", tail).decisions(1)

    assert one.match_threshold == pytest.approx(tail.threshold(MATCH_FMR))
    assert one.possible_threshold == pytest.approx(tail.threshold(POSSIBLE_FMR))
    assert one.match_fpir == pytest.approx(MATCH_FMR)  # below the 1% asked: the floor holds
    assert Calibration("m", tail).lowest_possible() == one.possible_threshold


def test_a_fitted_tail_extrapolates_a_known_law() -> None:
    # Scores whose upper tail is exactly exponential: 1% of them are 0.2 + Exp(scale 0.02).
    rng = np.random.default_rng(7)
    body = rng.uniform(-0.2, 0.2, 4_950_000)
    tail_scores = 0.2 + rng.exponential(0.02, 50_000)

    tail = fit_tail(np.concatenate([body, tail_scores]))

    assert tail.pairs == 5_000_000
    assert tail.start == pytest.approx(0.2 + 0.02 * np.log(10), abs=2e-3)  # FMR 1e-3 there
    assert abs(tail.shape) < 0.05
    truth = 0.2 + 0.02 * np.log(0.01 / 1e-8)  # where FMR is 1e-8, far beyond the data
    assert tail.threshold(1e-8) == pytest.approx(truth, abs=0.02)
    assert tail.threshold(0.1) == pytest.approx(np.quantile(body, 1 - 0.09 / 0.99), abs=2e-3)


def test_too_few_impostor_pairs_cannot_be_fitted() -> None:
    with pytest.raises(ConfigError, match="too few"):
        fit_tail(np.linspace(-0.1, 0.3, 499))


def test_the_bundled_model_keeps_lfw_operating_points() -> None:
    # Measured on lfw-devtest (1,197,943 impostor pairs): FMR 1e-3 at 0.2286, 1e-4 at 0.2834.
    assert LFW.tail.threshold(1e-3) == pytest.approx(0.2286, abs=1e-3)
    assert LFW.tail.threshold(1e-4) == pytest.approx(0.2834, abs=2e-3)
    assert LFW.decisions(10**6).match_threshold > LFW.decisions(1000).match_threshold


def written(tmp_path: Path, model: str = "m") -> Path:
    path = tmp_path / "calibration.json"
    calibration = Calibration(model, exponential_tail(), 0.02, 0.2)
    write_calibration(path, calibration, {"source": "test"})
    return path


def test_a_written_file_is_what_the_variable_loads(tmp_path: Path) -> None:
    path = written(tmp_path)

    loaded = calibration_for(path, "m")

    assert loaded.tail == exponential_tail()
    assert (loaded.match_fpir, loaded.possible_fpir, loaded.source) == (0.02, 0.2, str(path))
    assert loaded.decisions(5000) == Calibration("m", exponential_tail(), 0.02, 0.2).decisions(5000)
    assert json.loads(path.read_text())["source"] == "test"


def test_without_the_variable_the_bundled_model_is_active() -> None:
    assert calibration_for(None, "anything") is LFW


def test_a_file_for_another_model_is_refused_naming_both(tmp_path: Path) -> None:
    path = written(tmp_path, model="w600k_r50-12345678")

    with pytest.raises(ConfigError, match=CALIBRATION_VARIABLE) as error:
        calibration_for(path, "w600k_mbf-9cc6e4a7")

    assert "w600k_r50-12345678" in str(error.value) and "w600k_mbf-9cc6e4a7" in str(error.value)
    assert str(path) in str(error.value)


def edited(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> str:
    data = json.loads(written(tmp_path).read_text())
    change(data)
    return json.dumps(data)


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data["impostor_tail"] if key in data["impostor_tail"] else data
        target[key] = value

    return change


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (None, "not JSON"),
        (_set("impostor_tail", None), "malformed"),
        (lambda d: d.pop("impostor_tail"), "no impostor_tail"),
        (lambda d: d.pop("model"), "malformed"),
        (_set("scale", -1.0), "scale > 0"),
        (_set("shape", "NaN"), "not finite"),
        (_set("body", [[0.1, 0.1], [0.5, 0.0]]), "FMRs falling"),
        (_set("start", 3.0), "between -1 and 1"),
        (_set("match_fpir", 0.5), "match_fpir <= possible_fpir"),
        (_set("possible_fpir", "many"), "malformed"),
    ],
)
def test_a_bad_file_is_a_config_error_naming_the_variable(
    tmp_path: Path, change: Callable[[dict[str, Any]], None] | None, why: str
) -> None:
    content = "{not json" if change is None else edited(tmp_path, change)
    path = tmp_path / "bad.json"
    path.write_text(content)

    with pytest.raises(ConfigError, match=CALIBRATION_VARIABLE) as error:
        load_calibration(path)

    assert why in str(error.value)
    assert str(path) in str(error.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{CALIBRATION_VARIABLE}=.*cannot read it"):
        calibration_for(tmp_path / "absent.json", "m")
