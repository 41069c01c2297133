"""collect_inputs (what a run will index) and Summary (how a run is reported)."""

from pathlib import Path

from facesearch.indexing import InputFile, Outcome, Summary, collect_inputs


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def relative(found: list[InputFile], root: Path) -> list[str]:
    return [item.path.relative_to(root).as_posix() for item in found]


def test_folder_is_walked_recursively_in_sorted_order(tmp_path: Path) -> None:
    # Created out of order, so the result cannot simply follow creation order.
    touch(
        tmp_path,
        "people/zoe/2.webp",
        "people/ann/b.PNG",
        "people/ann/a.jpg",
        "b.jpeg",
        "a.gif",
        "people/zoe/1.tif",
    )
    found, ignored = collect_inputs([tmp_path], "", False)
    assert relative(found, tmp_path) == [
        "a.gif",
        "b.jpeg",
        "people/ann/a.jpg",
        "people/ann/b.PNG",  # suffixes match in any case
        "people/zoe/1.tif",
        "people/zoe/2.webp",
    ]
    assert ignored == 0
    assert all(item.label == "" for item in found)


def test_files_in_folders_that_are_neither_images_nor_videos_are_counted_as_ignored(
    tmp_path: Path,
) -> None:
    touch(tmp_path, "a.jpg", "notes.txt", "clip.mp4", "sub/.DS_Store", "sub/b.bmp", "sub/README")
    found, ignored = collect_inputs([tmp_path], "", False)
    assert relative(found, tmp_path) == ["a.jpg", "clip.mp4", "sub/b.bmp"]
    assert ignored == 3


def test_label_from_dir_uses_the_parent_folder_name(tmp_path: Path) -> None:
    touch(tmp_path, "alice/1.jpg", "bob/x/2.jpg", "top.jpg")
    found, _ = collect_inputs([tmp_path], "", True)
    labels = {item.path.relative_to(tmp_path).as_posix(): item.label for item in found}
    assert labels == {"alice/1.jpg": "alice", "bob/x/2.jpg": "x", "top.jpg": tmp_path.name}


def test_explicit_label_wins_over_label_from_dir(tmp_path: Path) -> None:
    touch(tmp_path, "alice/1.jpg")
    found, _ = collect_inputs([tmp_path], "team", True)
    assert [item.label for item in found] == ["team"]
    found, _ = collect_inputs([tmp_path / "alice" / "1.jpg"], "team", True)
    assert [item.label for item in found] == ["team"]


def test_explicit_file_is_kept_whatever_its_suffix(tmp_path: Path) -> None:
    touch(tmp_path, "carol/photo.heic", "carol/notes.txt")
    explicit = tmp_path / "carol" / "photo.heic"
    found, ignored = collect_inputs([explicit], "", True)
    assert found == [InputFile(explicit, "carol")]
    assert ignored == 0


def test_files_and_folders_keep_the_order_given(tmp_path: Path) -> None:
    touch(tmp_path, "d/2.jpg", "d/1.jpg", "z.png", "d/skip.txt")
    found, ignored = collect_inputs([tmp_path / "z.png", tmp_path / "d"], "", False)
    assert found == [
        InputFile(tmp_path / "z.png", ""),
        InputFile(tmp_path / "d" / "1.jpg", ""),
        InputFile(tmp_path / "d" / "2.jpg", ""),
    ]
    assert ignored == 1


def test_empty_folder_gives_nothing(tmp_path: Path) -> None:
    assert collect_inputs([tmp_path], "x", True) == ([], 0)


# --- Summary ----------------------------------------------------------------------------------


def test_summary_counts_each_outcome() -> None:
    summary = Summary()
    summary.add(Outcome("a.jpg", "indexed", "id-a", faces=3))
    summary.add(Outcome("b.jpg", "indexed", "id-b", faces=0))
    summary.add(Outcome("c.jpg", "unchanged", "id-c", faces=2))
    bad = Outcome("d.jpg", "failed", reason="bad_image: corrupt or truncated image: x")
    summary.add(bad)
    assert summary.images == 4
    assert summary.indexed == 2
    assert summary.unchanged == 1
    assert summary.faces_indexed == 3  # unchanged images add no faces
    assert summary.no_faces == 1
    assert summary.failed == [bad]


def test_failure_reasons_group_by_the_code_before_the_colon() -> None:
    summary = Summary()
    for path, reason in [
        ("a", "bad_image: empty file"),
        ("b", "bad_image: corrupt or truncated image: broken data stream"),
        ("c", "too_large: 60000000 bytes exceeds the limit"),
        ("d", "unreadable: Permission denied"),
        ("e", "unsupported_type: video files are not indexed yet"),
    ]:
        summary.add(Outcome(path, "failed", reason=reason))
    assert summary.failure_reasons() == {
        "bad_image": 2,
        "too_large": 1,
        "unreadable": 1,
        "unsupported_type": 1,
    }
    assert summary.images == 5
    assert summary.indexed == 0


def test_failure_reasons_of_a_clean_run_are_empty() -> None:
    summary = Summary()
    summary.add(Outcome("a.jpg", "indexed", "id", faces=1))
    assert summary.failure_reasons() == {}
