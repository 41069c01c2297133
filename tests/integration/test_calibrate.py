"""``facesearch calibrate`` on a small folder-per-person set and a small pairs file cut from
lfw-devtest, and FACESEARCH_CALIBRATION steering search's decisions (a file for another model,
or a malformed one, refused at start)."""

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_checks import FACESEARCH

from facesearch.calibration import load_calibration

Cli = Callable[..., subprocess.CompletedProcess[str]]
PEOPLE, PHOTOS, SINGLES = 10, 3, 5


@pytest.fixture
def lfw_root(face_data: Path) -> Path:
    return face_data / "lfw-devtest"


@pytest.fixture
def people(lfw_root: Path, tmp_path: Path) -> Path:
    """The first 10 people of lfw-devtest with 3 photos or more (3 each) and the first 5 with
    one photo, copied as one folder per person."""
    folders = sorted(p for p in lfw_root.iterdir() if p.is_dir())
    several = [f for f in folders if len(list(f.glob("*.jpg"))) >= PHOTOS][:PEOPLE]
    single = [f for f in folders if len(list(f.glob("*.jpg"))) == 1][:SINGLES]
    root = tmp_path / "people"
    for folder, count in [(f, PHOTOS) for f in several] + [(f, 1) for f in single]:
        (root / folder.name).mkdir(parents=True)
        for photo in sorted(folder.glob("*.jpg"))[:count]:
            shutil.copy(photo, root / folder.name / photo.name)
    return root


def run_with(
    env_extra: dict[str, str], home: Path, *args: str | Path
) -> subprocess.CompletedProcess[str]:
    """The console script with FACESEARCH_HOME and extra variables (run_cli sets no others)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACESEARCH_", "QDRANT_"))}
    env.update({"FACESEARCH_HOME": str(home), **env_extra})
    return subprocess.run(
        [str(FACESEARCH), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def test_calibrate_a_folder_gives_thresholds_that_fall_as_the_fmr_grows(
    run_cli: Cli, people: Path, tmp_path: Path
) -> None:
    written = tmp_path / "calibration.json"

    result = run_cli("calibrate", people, "--json", "--write", written)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    images = PEOPLE * PHOTOS + SINGLES
    assert (report["images"], report["people"], report["no_face"]) == (images, 15, 0)
    assert report["genuine_pairs"] == PEOPLE * 3  # 3 pairs among 3 photos
    assert report["impostor_pairs"] == images * (images - 1) // 2 - PEOPLE * 3
    points = report["operating_points"]
    assert [p["fmr"] for p in points] == [1e-2, 1e-3, 1e-4]
    thresholds = [p["threshold"] for p in points]
    assert thresholds[0] < thresholds[1] <= thresholds[2]  # 565 impostor pairs: 5, 0, 0 above
    assert [p["impostors_above"] for p in points] == [5, 0, 0]
    assert [p["resolved"] for p in points] == [True, False, False]
    assert all(0.0 <= p["fnmr"] <= 1.0 for p in points)
    saved = json.loads(written.read_text())
    assert [p["threshold"] for p in saved["operating_points"]] == thresholds
    assert saved["model"] == report["model"]
    tail = report["impostor_tail"]
    assert tail["pairs"] == report["impostor_pairs"]
    assert saved["impostor_tail"] == tail
    # The decisions rise with the gallery and stand for the FPIRs asked where no floor holds.
    rows = report["decisions"]
    assert [r["gallery_faces"] for r in rows] == [1, 100, 1_000, 10_000, 100_000, 1_000_000]
    matches = [r["match_threshold"] for r in rows]
    assert matches == sorted(matches) and matches[0] < matches[-1]
    assert rows[-1]["match_fpir"] == pytest.approx(0.01, rel=1e-2)
    assert rows[-1]["possible_fpir"] == pytest.approx(0.1, rel=1e-2)
    assert load_calibration(written).decisions(1_000_000).as_json() == rows[-1]


def test_calibrate_a_pairs_file_uses_the_listed_pairs(
    run_cli: Cli, lfw_root: Path, tmp_path: Path
) -> None:
    pairs = tmp_path / "pairs.txt"
    same = ["Abdullah_Gul\t13\t14", "Abdullah_Gul\t13\t16"]
    different = ["AJ_Lamas\t1\tZach_Safrin\t1", "Abdullah_Gul\t13\tZach_Safrin\t1"]
    pairs.write_text("\n".join(["2", *same, *different]) + "\n")

    result = run_cli("calibrate", pairs, "--root", lfw_root)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("images       5 of 3 people, 0 without a face")
    assert lines[1] == "pairs        2 genuine (same person), 2 impostor (different people)"
    assert lines[2].split() == ["FMR", "threshold", "FNMR", "impostors", "at", "or", "above"]
    assert all("too few impostor pairs" in line for line in lines[3:6])
    assert lines[6].startswith("no model     2 different-person pairs are too few")


def test_too_few_pairs_write_nothing_and_say_why(
    run_cli: Cli, lfw_root: Path, tmp_path: Path
) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\nAbdullah_Gul\t13\t14\nAJ_Lamas\t1\tZach_Safrin\t1\n")
    written = tmp_path / "calibration.json"

    result = run_cli("calibrate", pairs, "--root", lfw_root, "--write", written)

    assert result.returncode == 1
    assert "nothing written" in result.stderr and "too few" in result.stderr
    assert not written.exists()


def test_the_calibration_file_steers_search_decisions(
    run_cli: Cli, people: Path, home: Path, tmp_path: Path
) -> None:
    folders = sorted(people.iterdir())
    person = next(f for f in folders if len(list(f.iterdir())) == PHOTOS)
    stranger = next(f for f in folders if len(list(f.iterdir())) == 1)
    assert run_cli("index", person, stranger, "--label-from-dir").returncode == 0
    query = sorted(person.iterdir())[0]
    model = json.loads(run_cli("stats", "--json").stdout)["model"]
    strict = tmp_path / "strict.json"
    # Impostor scores far higher than real ones: "match" only from 0.96 (the FMR 1e-4 floor),
    # which only the query's own indexed copy reaches.
    strict.write_text(json.dumps(calibration_file(model)))
    search = ("search", query, "--threshold", "-1", "--json")

    default = run_with({}, home, *search)
    steered = run_with({"FACESEARCH_CALIBRATION": str(strict)}, home, *search)

    assert default.returncode == 0 and steered.returncode == 0, default.stderr + steered.stderr
    before = json.loads(default.stdout)
    after = json.loads(steered.stdout)
    gallery = stats_faces(run_cli)
    assert after["decisions"]["gallery_faces"] == before["decisions"]["gallery_faces"] == gallery
    assert after["decisions"]["match_threshold"] == pytest.approx(0.9605, abs=1e-4)
    mine = [m["decision"] for m in before["faces"][0]["matches"] if m["label"] == person.name]
    assert mine[:2] == ["match", "match"]  # the query's copy and another photo of the person
    steered_mine = [m for m in after["faces"][0]["matches"] if m["label"] == person.name]
    assert steered_mine[0]["decision"] == "match" and steered_mine[0]["score"] > 0.99
    assert "match" not in [m["decision"] for m in steered_mine[1:]]
    strangers = [m for m in before["faces"][0]["matches"] if m["label"] == stranger.name]
    assert {m["decision"] for m in strangers} == {"no_match"}


def stats_faces(run_cli: Cli) -> int:
    faces: int = json.loads(run_cli("stats", "--json").stdout)["faces"]
    return faces


def calibration_file(model: str) -> dict[str, object]:
    """FMR 0.01 * exp(-(t - 0.5) / 0.1) above 0.5 (1e-4 at 0.96, 1e-3 at 0.73)."""
    tail = {"body": [[0.5, 0.0], [0.1, 0.3]], "start": 0.5, "fraction": 0.01, "shape": 0.0,
            "scale": 0.1, "pairs": 1000}  # fmt: skip
    return {"model": model, "impostor_tail": tail, "match_fpir": 0.01, "possible_fpir": 0.1}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (json.dumps(calibration_file("w600k_r50-0123abcd")), "made for model 'w600k_r50-0123abcd'"),
        ("{not json", "not JSON"),
        (json.dumps({"operating_points": []}), "no impostor_tail"),
    ],
    ids=["another-model", "not-json", "older-format"],
)
def test_a_bad_calibration_file_is_refused_at_start_in_one_line(
    run_cli: Cli, people: Path, home: Path, tmp_path: Path, content: str, why: str
) -> None:
    person = sorted(people.iterdir())[0]
    assert run_cli("index", person).returncode == 0
    bad = tmp_path / "bad.json"
    bad.write_text(content)

    result = run_with(
        {"FACESEARCH_CALIBRATION": str(bad)}, home, "search", sorted(person.iterdir())[0]
    )

    assert result.returncode == 1
    assert result.stderr.startswith(f"facesearch: error: FACESEARCH_CALIBRATION={bad}: {why}")
    assert len(result.stderr.splitlines()) == 1
    if "model" in why:
        assert "this one ('w600k_mbf-" in result.stderr


def test_calibrate_help_explains_fmr_and_fnmr(run_cli: Cli) -> None:
    result = run_cli("calibrate", "--help")

    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "FMR, the false-match rate" in text
    assert "FNMR, the false non-match rate" in text
    assert "no --gateway" in text
    assert "FACESEARCH_CALIBRATION" in text
