"""``facesearch compare KNOWN_DIR UNKNOWN_PATH`` on face_recognition's own photos."""

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from facesearch.calibration import LFW

Cli = Callable[..., subprocess.CompletedProcess[str]]
# Two known people: the match threshold of a gallery of 2 faces (the per-pair floor there).
DEFAULT_TOLERANCE = 1.0 - LFW.decisions(2).match_threshold


def lfw_stranger(face_data: Path) -> Path:
    """The first photo of the first LFW person who is neither Obama nor Biden."""
    people = sorted(p for p in (face_data / "lfw-devtest").iterdir() if p.is_dir())
    for person in people:
        if "Obama" in person.name or "Biden" in person.name:
            continue
        photo = person / f"{person.name}_0001.jpg"
        if photo.is_file():
            return photo
    raise AssertionError("no LFW photo of a stranger")


@pytest.fixture
def known(tmp_path: Path, face_data: Path) -> Path:
    folder = tmp_path / "known"
    folder.mkdir()
    examples = face_data / "face_recognition" / "examples"
    shutil.copy(examples / "obama.jpg", folder / "obama.jpg")
    shutil.copy(examples / "biden.jpg", folder / "biden.jpg")
    return folder


@pytest.fixture
def unknown(tmp_path: Path, face_data: Path, grey_jpeg: Callable[[Path], Path]) -> Path:
    folder = tmp_path / "unknown"
    folder.mkdir()
    tests = face_data / "face_recognition" / "tests" / "test_images"
    shutil.copy(tests / "obama2.jpg", folder / "a_obama2.jpg")
    shutil.copy(tests / "obama3.jpg", folder / "b_obama3.jpg")
    shutil.copy(tests / "biden.jpg", folder / "c_biden.jpg")
    shutil.copy(
        face_data / "face_recognition" / "examples" / "two_people.jpg", folder / "d_two.jpg"
    )
    grey_jpeg(folder / "e_grey.jpg")
    shutil.copy(lfw_stranger(face_data), folder / "f_stranger.jpg")
    (folder / "notes.txt").write_text("not a photo\n")
    return folder


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.splitlines()


def test_compare_names_each_face_like_face_recognition(
    run_cli: Cli, known: Path, unknown: Path
) -> None:
    out = lines(run_cli("compare", known, unknown))

    u = str(unknown)
    assert out[:3] == [
        f"{u}/a_obama2.jpg,obama",
        f"{u}/b_obama3.jpg,obama",
        f"{u}/c_biden.jpg,biden",
    ]
    assert sorted(out[3:5]) == [f"{u}/d_two.jpg,biden", f"{u}/d_two.jpg,obama"]
    assert out[5:] == [f"{u}/e_grey.jpg,no_persons_found", f"{u}/f_stranger.jpg,unknown_person"]


def test_compare_show_distance_adds_the_distance_of_each_match(
    run_cli: Cli, known: Path, unknown: Path
) -> None:
    out = lines(run_cli("compare", "--show-distance", known, unknown))

    u = str(unknown)
    distances = {}
    for line in out:
        match = re.fullmatch(r"(.+),(obama|biden),(-?\d+\.\d{4})", line)
        if match:
            distances[(Path(match[1]).name, match[2])] = float(match[3])
    assert sorted(distances) == [
        ("a_obama2.jpg", "obama"),
        ("b_obama3.jpg", "obama"),
        ("c_biden.jpg", "biden"),
        ("d_two.jpg", "biden"),
        ("d_two.jpg", "obama"),
    ]
    for distance in distances.values():
        assert 0.0 <= distance + 1e-4 <= DEFAULT_TOLERANCE
    assert distances[("c_biden.jpg", "biden")] == pytest.approx(0.0, abs=1e-3)  # the same file
    assert distances[("a_obama2.jpg", "obama")] > 0.05
    assert f"{u}/e_grey.jpg,no_persons_found" in out
    assert f"{u}/f_stranger.jpg,unknown_person" in out
    assert len(out) == 7


def test_compare_a_strict_tolerance_leaves_only_the_identical_photo(
    run_cli: Cli, known: Path, unknown: Path
) -> None:
    out = lines(run_cli("compare", "--tolerance", "0.01", known, unknown / "c_biden.jpg"))
    strict = lines(run_cli("compare", "--tolerance", "0.01", known, unknown / "a_obama2.jpg"))

    assert out == [f"{unknown}/c_biden.jpg,biden"]
    assert strict == [f"{unknown}/a_obama2.jpg,unknown_person"]


def test_compare_warns_about_known_photos_it_cannot_use(
    run_cli: Cli, known: Path, unknown: Path, grey_jpeg: Callable[[Path], Path]
) -> None:
    grey_jpeg(known / "nobody.jpg")
    shutil.copy(unknown / "d_two.jpg", known / "pair.jpg")

    result = run_cli("compare", known, unknown / "f_stranger.jpg")

    assert lines(result) == [f"{unknown}/f_stranger.jpg,unknown_person"]
    assert f"WARNING: No faces found in {known}/nobody.jpg. Ignoring file." in result.stderr
    assert f"WARNING: More than one face found in {known}/pair.jpg." in result.stderr


def test_compare_without_a_usable_known_photo_is_an_error(
    run_cli: Cli, tmp_path: Path, unknown: Path, grey_jpeg: Callable[[Path], Path]
) -> None:
    empty_known = tmp_path / "nobody-known"
    grey_jpeg(empty_known / "grey.jpg")

    result = run_cli("compare", empty_known, unknown)

    assert result.returncode == 1
    assert f"facesearch: error: no known faces in {empty_known}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_compare_skips_an_unreadable_unknown_and_exits_3(
    run_cli: Cli, known: Path, unknown: Path
) -> None:
    data = (unknown / "a_obama2.jpg").read_bytes()
    (unknown / "a_broken.jpg").write_bytes(data[: len(data) // 2])

    result = run_cli("compare", known, unknown)

    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert f"WARNING: cannot read {unknown}/a_broken.jpg" in result.stderr
    assert result.stdout.splitlines()[0] == f"{unknown}/a_obama2.jpg,obama"
    assert len(result.stdout.splitlines()) == 7


def test_compare_gives_each_face_one_name_and_all_gives_every_name(
    run_cli: Cli, known: Path, unknown: Path
) -> None:
    two = unknown / "d_two.jpg"

    one_each = lines(run_cli("compare", "--tolerance", "2", known, two))
    everyone = lines(run_cli("compare", "--tolerance", "2", "--all", known, two))

    # Within tolerance 2 every known face is within reach of every face; jointly, Biden's face
    # is biden and Obama's obama, as the default tolerance has it.
    assert sorted(one_each) == [f"{two},biden", f"{two},obama"]
    assert sorted(everyone) == sorted([f"{two},biden", f"{two},obama"] * 2)
