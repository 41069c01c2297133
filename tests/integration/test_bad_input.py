"""Files that are not good photos, end to end through the CLI: each is skipped with its reason,
the good ones are indexed, nothing crashes."""

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from bad_inputs import MINIMAL_PDF, png_claiming
from PIL import Image

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def mixed(tmp_path: Path, demo: dict[str, Path]) -> Path:
    """Good photos (12 faces in all, one in a sub-folder), a 1x1 PNG, six bad files and a
    README that is not an image."""
    root = tmp_path / "mixed"
    (root / "sub").mkdir(parents=True)
    shutil.copy(demo["gdp"], root / "gdp.jpg")
    shutil.copy(demo["t1"], root / "t1.jpg")
    shutil.copy(demo["yaoming"], root / "sub" / "yaoming.jpg")
    Image.new("RGB", (1, 1), (200, 100, 50)).save(root / "tiny.png")
    (root / "empty.jpg").write_bytes(b"")
    whole = demo["gdp"].read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "garbage.png").write_bytes(bytes((i * 37 + 11) % 256 for i in range(4096)))
    (root / "notes.jpg").write_text("shopping list: milk, eggs\n")
    (root / "doc.jpg").write_bytes(MINIMAL_PDF)
    (root / "huge.png").write_bytes(png_claiming(30000, 30000))
    (root / "README.txt").write_text("these are my photos\n")
    return root


NOT_AN_IMAGE = "bad_image: not an image, or a format facesearch does not read"


def expected_failures(root: Path, missing: Path) -> dict[str, str]:
    """Path -> the start of its reason."""
    return {
        str(root / "doc.jpg"): NOT_AN_IMAGE,
        str(root / "empty.jpg"): "bad_image: empty file",
        str(root / "garbage.png"): NOT_AN_IMAGE,
        str(root / "huge.png"): "too_large: ",
        str(root / "notes.jpg"): NOT_AN_IMAGE,
        str(root / "truncated.jpg"): "bad_image: corrupt or truncated image",
        str(missing): "unreadable: No such file or directory",
    }


def test_index_skips_each_bad_file_with_its_reason_and_indexes_the_rest(
    run_cli: Cli, mixed: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "not-there.jpg"

    result = run_cli("index", "--json", mixed, missing)

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    expected = expected_failures(mixed, missing)
    failed = {f["path"]: f["reason"] for f in summary["failed"]}
    assert sorted(failed) == sorted(expected)
    assert len(summary["failed"]) == len(expected)
    for path, reason in failed.items():
        assert reason.startswith(expected[path]), (path, reason)
    assert "30000x30000" in failed[str(mixed / "huge.png")]
    assert summary["images"] == 4 + len(expected)
    assert summary["indexed"] == 4  # gdp, t1, sub/yaoming and the 1x1 PNG
    assert summary["unchanged"] == 0
    assert summary["faces_indexed"] == 5 + 6 + 1
    assert summary["no_faces"] == 1
    assert summary["ignored"] == 1

    stats = run_cli("stats", "--json")
    assert stats.returncode == 0, stats.stderr
    counts = json.loads(stats.stdout)
    assert (counts["images"], counts["images_with_faces"], counts["faces"]) == (4, 3, 12)


def test_index_text_output_names_every_skipped_file_on_stderr(
    run_cli: Cli, mixed: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "not-there.jpg"

    result = run_cli("index", mixed, missing)

    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    expected = expected_failures(mixed, missing)
    assert len(skipped) == len(expected)
    for path, reason in expected.items():
        assert any(line.startswith(f"skipped {path}: {reason}") for line in skipped), path
    assert ": 4 indexed, 0 already indexed, 7 skipped; 12 faces indexed, " in result.stdout
    assert "1 images without a face" in result.stdout
    assert "1 files in the folders were not images and were ignored" in result.stdout


def test_a_second_run_retries_only_the_bad_files(run_cli: Cli, mixed: Path) -> None:
    first = run_cli("index", "--json", mixed)
    assert first.returncode == 3

    second = run_cli("index", "--json", mixed)

    assert second.returncode == 3
    summary = json.loads(second.stdout)
    assert (summary["indexed"], summary["unchanged"], len(summary["failed"])) == (0, 4, 6)
    assert summary["faces_indexed"] == 0


def test_a_broken_video_named_on_the_command_line_is_skipped_with_its_reason(
    run_cli: Cli, tmp_path: Path, demo: dict[str, Path]
) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)

    result = run_cli("index", "--json", clip, demo["gdp"])

    assert result.returncode == 3
    summary = json.loads(result.stdout)
    assert summary["failed"] == [
        {
            "path": str(clip),
            "reason": "bad_image: not a video OpenCV can open (corrupt, truncated or another "
            "format)",
        }
    ]
    assert (summary["indexed"], summary["faces_indexed"]) == (1, 5)


def test_all_good_inputs_exit_zero(run_cli: Cli, demo: dict[str, Path]) -> None:
    result = run_cli("index", "--json", demo["gdp"])

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["failed"] == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated.jpg", "corrupt or truncated image"),
        ("huge.png", "30000x30000 pixels exceeds the limit"),
        ("notes.jpg", "not an image"),
        ("empty.jpg", "empty file"),
    ],
)
def test_a_bad_query_image_is_an_error_not_a_crash(
    run_cli: Cli, mixed: Path, name: str, message: str
) -> None:
    result = run_cli("search", mixed / name)

    assert result.returncode == 1
    assert result.stderr.startswith("facesearch: error: ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""
