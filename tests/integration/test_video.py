"""Videos through the ``facesearch`` command: index face_recognition's Hamilton clip, find Lin-
Manuel Miranda and Alex Lacamoire in it with times, look at the frame, skip broken videos."""

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import pytest
from cli_checks import as_json, ok

Cli = Callable[..., subprocess.CompletedProcess[str]]
# Without tracks every face of every sampled frame would be a point (47 in the clip's 20
# samples at 2 per second; about 650 over all 275 frames). Tracks keep at most 3 faces each;
# the clip gave 16 tracks, 35 points when this was written: 48 leaves room for a track or
# two split differently, and still fails if faces stop being merged into tracks.
MAX_POINTS = 48
TEXT_HIT = re.compile(r"short_hamilton_clip\.mp4 @ \d:\d\d\.\d-\d:\d\d\.\d \(best \d:\d\d\.\d\d\)$")


@pytest.fixture
def examples(face_data: Path) -> Path:
    return face_data / "face_recognition" / "examples"


@pytest.fixture
def clip(examples: Path) -> Path:
    return examples / "short_hamilton_clip.mp4"


def video_hits(found: dict[str, Any], video_id: str) -> list[dict[str, Any]]:
    return [m for face in found["faces"] for m in face["matches"] if m["video_id"] == video_id]


def test_a_clip_is_indexed_as_a_few_tracks_and_found_with_times(
    run_cli: Cli, clip: Path, examples: Path
) -> None:
    video_id = hashlib.sha256(clip.read_bytes()).hexdigest()

    summary = as_json(run_cli("index", "--json", clip))

    assert (summary["images"], summary["indexed"], summary["failed"]) == (1, 1, [])
    points = summary["faces_indexed"]
    assert 2 <= points <= MAX_POINTS
    assert as_json(run_cli("stats", "--json"))["faces"] == points
    for query in ("lin-manuel-miranda.png", "alex-lacamoire.png"):
        found = as_json(run_cli("search", "--json", examples / query))
        hits = video_hits(found, video_id)
        assert hits, f"{query}: no hit in the clip"
        for hit in hits:
            assert hit["image_id"] == video_id
            assert 0 <= hit["t_start_ms"] <= hit["best_ms"] <= hit["t_end_ms"] <= 9200
            assert hit["path"] == str(clip)


def test_search_text_says_which_video_and_when(run_cli: Cli, clip: Path, examples: Path) -> None:
    ok(run_cli("index", clip))

    text = ok(run_cli("search", examples / "lin-manuel-miranda.png")).stdout

    hits = [line for line in text.splitlines() if "short_hamilton_clip.mp4" in line]
    assert hits, text
    assert all(TEXT_HIT.search(line) for line in hits), text


def test_indexing_a_clip_again_changes_nothing_and_delete_removes_it(
    run_cli: Cli, clip: Path
) -> None:
    first = as_json(run_cli("index", "--json", clip))
    again = as_json(run_cli("index", "--json", clip))
    assert (again["unchanged"], again["indexed"]) == (1, 0)
    relabelled = as_json(run_cli("index", "--json", "--label", "cast", clip))
    assert relabelled["faces_indexed"] == first["faces_indexed"]  # same ids, overwritten
    assert as_json(run_cli("stats", "--json"))["faces"] == first["faces_indexed"]

    deleted = as_json(run_cli("delete", "--json", "--image", clip))

    counted = {key: deleted[key] for key in ("images", "faces", "collections")}
    assert counted == {"images": 1, "faces": first["faces_indexed"], "collections": {"default": 1}}


def test_show_frame_writes_the_frame_with_the_box(run_cli: Cli, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "frame.png"

    result = ok(run_cli("show-frame", clip, "0:05.27", "--box", "245,24,330,138", "--out", out))

    assert result.stdout.strip() == str(out)
    image = cv2.imread(str(out))
    assert image is not None and image.shape == (360, 640, 3)
    assert tuple(image[24, 280]) == (0, 255, 0)  # on the box's top edge
    as_jpeg = as_json(run_cli("show-frame", "--json", clip, "5.27", "--out", tmp_path / "f.jpg"))
    assert as_jpeg["ms"] == 5272  # frame 158 at 29.97 fps
    assert (as_jpeg["width"], as_jpeg["height"]) == (640, 360)


def test_show_frame_refuses_a_time_past_the_end_in_one_line(run_cli: Cli, clip: Path) -> None:
    result = run_cli("show-frame", clip, "1:00", "--out", "x.png")
    assert result.returncode == 1
    assert "no frame at 1:00.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_truncated_video_is_skipped_with_its_reason_and_the_rest_indexed(
    run_cli: Cli, clip: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(clip, folder / "good.mp4")
    data = clip.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "noise.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 40)

    result = run_cli("index", "--json", folder)

    assert result.returncode == 3, result.stderr
    summary = json.loads(result.stdout)
    assert summary["indexed"] == 1 and summary["faces_indexed"] >= 2
    failed = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    assert sorted(failed) == ["noise.mkv", "truncated.mp4"]
    assert all(reason.startswith("bad_image: ") for reason in failed.values()), failed
