"""LFW pairs files and the verification metrics, on small hand-checked cases."""

from pathlib import Path

import numpy as np
import pytest

from facesearch.errors import ConfigError
from facesearch.lfw import (
    FOLDS,
    Pair,
    accuracy,
    best_threshold,
    kfold_accuracy,
    read_pairs,
    tar_at_far,
)


def same_line(i: int) -> str:
    return f"Same_{i}\t{i % 3 + 1}\t{i % 3 + 2}"


def different_line(i: int) -> str:
    return f"Left_{i}\t{i + 1}\tRight_{i}\t{i + 10}"


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- read_pairs ------------------------------------------------------------------------------


def test_view1_file_is_read_with_stratified_folds(tmp_path: Path) -> None:
    n = 25
    lines = [str(n)] + [same_line(i) for i in range(n)] + [different_line(i) for i in range(n)]
    pairs = read_pairs(write(tmp_path, lines))
    assert len(pairs) == 2 * n
    same = [p for p in pairs if p.same]
    different = [p for p in pairs if not p.same]
    assert len(same) == len(different) == n
    assert pairs[:n] == same  # file order kept
    for i, pair in enumerate(same):
        assert pair.fold == i % FOLDS
        assert pair.left == f"Same_{i}/Same_{i}_{i % 3 + 1:04d}.jpg"
    for i, pair in enumerate(different):
        assert pair.fold == i % FOLDS
        assert pair.right == f"Right_{i}/Right_{i}_{i + 10:04d}.jpg"
    for fold in range(FOLDS):
        kinds = {p.same for p in pairs if p.fold == fold}
        assert kinds == {True, False}, f"fold {fold} lacks a kind"


def test_view2_file_takes_folds_from_its_blocks(tmp_path: Path) -> None:
    lines = ["2\t3"]
    for block in range(2):
        lines += [same_line(10 * block + i) for i in range(3)]
        lines += [different_line(10 * block + i) for i in range(3)]
    pairs = read_pairs(write(tmp_path, lines))
    assert [p.fold for p in pairs] == [0] * 6 + [1] * 6
    assert [p.same for p in pairs] == ([True] * 3 + [False] * 3) * 2
    assert pairs[6] == Pair("Same_10/Same_10_0002.jpg", "Same_10/Same_10_0003.jpg", True, 1)


def test_file_names_are_zero_padded(tmp_path: Path) -> None:
    path = write(tmp_path, ["1", "Abel_Pacheco 1 4", "Abdullah_Gul 13 Ben_Affleck 7"])
    same, different = read_pairs(path)
    assert same == Pair(
        "Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg", True, 0
    )
    assert different.left == "Abdullah_Gul/Abdullah_Gul_0013.jpg"
    assert different.right == "Ben_Affleck/Ben_Affleck_0007.jpg"
    assert different.same is False


def test_blank_lines_and_spaces_are_tolerated(tmp_path: Path) -> None:
    path = write(tmp_path, ["", "1", "  Ann 1 2  ", "", "Ann 1 Bob 1", ""])
    assert [p.same for p in read_pairs(path)] == [True, False]


def test_count_mismatch_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, ["3", same_line(0), same_line(1), same_line(2), different_line(0)])
    with pytest.raises(ConfigError, match="6 pairs, found 4"):
        read_pairs(path)


def test_view2_count_mismatch_is_a_config_error(tmp_path: Path) -> None:
    lines = ["2\t1", same_line(0), different_line(0), same_line(1)]
    with pytest.raises(ConfigError, match="4 pairs, found 3"):
        read_pairs(write(tmp_path, lines))


@pytest.mark.parametrize(
    "lines",
    [
        ["1", "Ann 1 Bob 2", "Ann 1 Bob 2"],  # a different-person line where same is due
        ["1", "Ann 1 2", "Ann 1 2"],  # a same-person line where different is due
        ["1", "Ann 1", "Ann 1 Bob 2"],  # too few fields
    ],
)
def test_malformed_line_is_a_config_error_naming_the_line(tmp_path: Path, lines: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"pairs\.txt:[23]: expected"):
        read_pairs(write(tmp_path, lines))


def test_non_numeric_image_number_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, ["1", "Ann 1 two", "Ann 1 Bob 2"])
    with pytest.raises(ConfigError):
        read_pairs(path)


@pytest.mark.parametrize("header", ["", "ten", "10 300 1", "-5", "1.5", "10\tx"])
def test_bad_header_is_a_config_error(tmp_path: Path, header: str) -> None:
    path = write(tmp_path, [header, "Ann 1 2", "Ann 1 Bob 2"])
    with pytest.raises(ConfigError, match="first line"):
        read_pairs(path)


def test_empty_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("")
    with pytest.raises(ConfigError):
        read_pairs(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read pairs file"):
        read_pairs(tmp_path / "absent.txt")


# --- metrics ---------------------------------------------------------------------------------


def test_best_threshold_separates_perfectly_separable_scores() -> None:
    scores = np.array([0.1, 0.9, 0.2, 0.8])
    same = np.array([False, True, False, True])
    threshold = best_threshold(scores, same)
    assert threshold == pytest.approx(0.5)  # midway between 0.2 and 0.8
    assert accuracy(scores, same, threshold) == 1.0


def test_best_threshold_with_overlap_maximises_accuracy() -> None:
    # One impostor (0.6) above one genuine pair (0.55): the best is 5 of 6 right.
    scores = np.array([0.9, 0.7, 0.55, 0.6, 0.3, 0.1])
    same = np.array([True, True, True, False, False, False])
    threshold = best_threshold(scores, same)
    assert accuracy(scores, same, threshold) == pytest.approx(5 / 6)
    assert 0.3 < threshold < 0.7


def test_best_threshold_when_every_pair_is_the_same_person_accepts_all() -> None:
    scores = np.array([0.2, 0.4, 0.3])
    same = np.array([True, True, True])
    threshold = best_threshold(scores, same)
    assert threshold < 0.2
    assert accuracy(scores, same, threshold) == 1.0


def test_accuracy_accepts_at_the_threshold() -> None:
    scores = np.array([0.5, 0.4, 0.6, 0.1])
    same = np.array([True, True, False, False])
    # 0.5 >= 0.5 accepted (right), 0.4 rejected (wrong), 0.6 accepted (wrong), 0.1 right.
    assert accuracy(scores, same, 0.5) == 0.5


def test_kfold_accuracy_perfect() -> None:
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.75, 0.3, 0.35])
    same = np.array([True, True, False, False] * 2)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert kfold_accuracy(scores, same, folds) == (1.0, 0.0)


def test_kfold_accuracy_uses_the_threshold_of_the_other_folds() -> None:
    # Fold 0 alone would pick 0.5 (between 0.2 and 0.8); fold 1 has an impostor at 0.52, which
    # that threshold accepts: 3 of 4 right. Fold 1 alone picks 0.56, right for all of fold 0.
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.6, 0.52, 0.4])
    same = np.array([True, True, False, False] * 2)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    mean, std = kfold_accuracy(scores, same, folds)
    assert mean == pytest.approx(0.875)
    assert std == pytest.approx(0.125)


def test_tar_at_far_known_case() -> None:
    genuine = [0.9, 0.8, 0.7, 0.4]
    impostors = [0.75, 0.5, 0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.0, -0.1]
    scores = np.array(genuine + impostors)
    same = np.array([True] * 4 + [False] * 10)
    # FAR 10% of 10 impostors allows one: 0.75 may pass, 0.5 must not.
    tar, threshold = tar_at_far(scores, same, 0.1)
    assert 0.5 < threshold <= 0.5 + 1e-9
    assert tar == 0.75  # 0.9, 0.8 and 0.7 of the four genuine pairs
    # FAR 0 allows none: the threshold rises above 0.75, only 0.9 and 0.8 are accepted.
    tar, threshold = tar_at_far(scores, same, 0.0)
    assert 0.75 < threshold <= 0.75 + 1e-9
    assert tar == 0.5


def test_tar_at_far_never_exceeds_the_allowed_false_accepts() -> None:
    rng = np.random.default_rng(5)
    scores = np.concatenate([rng.normal(0.6, 0.15, 300), rng.normal(0.1, 0.15, 1000)])
    same = np.array([True] * 300 + [False] * 1000)
    for far in (0.001, 0.01, 0.1):
        tar, threshold = tar_at_far(scores, same, far)
        false_accepts = int((scores[~same] >= threshold).sum())
        assert false_accepts <= far * 1000
        # Lowest such threshold: one impostor more would be over the limit.
        assert false_accepts + 1 > far * 1000
        assert tar == pytest.approx(float((scores[same] >= threshold).mean()))
