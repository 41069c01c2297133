"""``facesearch eval lfw`` on a small slice of LFW View 1 test."""

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Cli = Callable[..., subprocess.CompletedProcess[str]]
PER_KIND = 20


def lfw_file(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


@pytest.fixture
def lfw_root(face_data: Path) -> Path:
    return face_data / "lfw-devtest"


@pytest.fixture
def small_pairs(lfw_root: Path, tmp_path: Path) -> tuple[Path, set[str]]:
    """The first 20 same-person and first 20 different-person pairs of pairsDevTest.txt, as a
    View 1 pairs file, and the distinct files they name."""
    rows = [line.split() for line in (lfw_root / "pairsDevTest.txt").read_text().splitlines()]
    assert rows[0] == ["500"]
    same, different = rows[1:501], rows[501:1001]
    assert all(len(r) == 3 for r in same) and all(len(r) == 4 for r in different)
    chosen_same, chosen_different = same[:PER_KIND], different[:PER_KIND]
    files = {lfw_file(n, a) for n, a, _ in chosen_same} | {
        lfw_file(n, b) for n, _, b in chosen_same
    }
    files |= {lfw_file(n, a) for n, a, _, _ in chosen_different}
    files |= {lfw_file(n, b) for _, _, n, b in chosen_different}
    body = ["\t".join(r) for r in chosen_same + chosen_different]
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join([str(PER_KIND), *body]) + "\n")
    return path, files


def test_eval_lfw_json_on_a_small_pairs_file(
    run_cli: Cli, lfw_root: Path, small_pairs: tuple[Path, set[str]]
) -> None:
    pairs, files = small_pairs

    result = run_cli("eval", "lfw", "--root", lfw_root, "--pairs", pairs, "--json")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert {
        "accuracy",
        "accuracy_std",
        "tar_at_far_1e-2",
        "threshold",
        "detect_failures",
        "images",
        "seconds",
    } <= set(report)
    assert report["accuracy"] >= 0.9
    assert 0.0 <= report["accuracy_std"] <= 0.2
    assert 0.0 <= report["tar_at_far_1e-2"] <= 1.0
    assert -1.0 <= report["threshold"] <= 1.0
    assert report["detect_failures"] == 0
    assert report["images"] == len(files)
    assert report["pairs"] == 2 * PER_KIND
    assert report["seconds"] > 0.0


def test_eval_lfw_counts_a_missing_image_as_a_detect_failure(
    run_cli: Cli, lfw_root: Path, tmp_path: Path
) -> None:
    pairs = tmp_path / "pairs.txt"
    same = "Abdullah_Gul\t13\t14"
    missing = "Abdullah_Gul\t13\t999"
    different = "AJ_Lamas\t1\tZach_Safrin\t1"
    pairs.write_text(f"2\n{same}\n{missing}\n{different}\n{different}\n")

    result = run_cli("eval", "lfw", "--root", lfw_root, "--pairs", pairs, "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["detect_failures"] == 1
    assert report["detect_failure_images"] == ["Abdullah_Gul/Abdullah_Gul_0999.jpg"]
    assert report["images"] == 5
    assert report["pairs"] == 4


def test_eval_lfw_text_output(
    run_cli: Cli, lfw_root: Path, small_pairs: tuple[Path, set[str]]
) -> None:
    pairs, files = small_pairs

    result = run_cli("eval", "lfw", "--root", lfw_root, "--pairs", pairs)

    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == f"pairs            40 (pairs.txt), images {len(files)}"
    assert out[1].startswith("accuracy         ")
    assert out[1].endswith("(10-fold)")
    assert out[4] == "no face found    0 images"


def test_eval_lfw_with_a_malformed_pairs_file_is_an_error(
    run_cli: Cli, lfw_root: Path, tmp_path: Path
) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2\nAbdullah_Gul\t13\t14\n")

    result = run_cli("eval", "lfw", "--root", lfw_root, "--pairs", pairs)

    assert result.returncode == 1
    assert "header promises 4 pairs, found 1" in result.stderr
    assert "Traceback" not in result.stderr
