"""The ``facesearch`` command as a user runs it: a subprocess with its own FACESEARCH_HOME."""

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cli_checks import as_json, ok

from facesearch import __version__
from facesearch.calibration import LFW
from facesearch.cli.output import percent
from facesearch.edge_store import EdgeFaceStore
from facesearch.models import FaceModels

Cli = Callable[..., subprocess.CompletedProcess[str]]
YAO_BOX = (720, 142, 764, 192)
BOX_TOLERANCE = 6
DEMO_LINE = re.compile(
    r"^best match  score (?P<score>-?\d\.\d{3})  (?P<name>\S+)  "
    r"x (?P<x1>\d+)-(?P<x2>\d+), y (?P<y1>\d+)-(?P<y2>\d+)$",
    re.MULTILINE,
)


def near(box: tuple[float, ...], expected: tuple[float, ...]) -> bool:
    return all(abs(a - b) <= BOX_TOLERANCE for a, b in zip(box, expected, strict=True))


def demo_best(stdout: str) -> tuple[float, str, tuple[int, int, int, int]]:
    found = DEMO_LINE.search(stdout)
    assert found, stdout
    box = (int(found["x1"]), int(found["y1"]), int(found["x2"]), int(found["y2"]))
    return float(found["score"]), found["name"], box


def gallery(demo: dict[str, Path]) -> list[Path]:
    return [demo["players"], demo["gdp"], demo["t1"]]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- demo -------------------------------------------------------------------------------------


def test_demo_finds_yao_ming_in_players(run_cli: Cli, home: Path) -> None:
    result = ok(run_cli("demo"))

    score, name, box = demo_best(result.stdout)
    assert name == "players.jpg"
    assert near(box, YAO_BOX), box
    assert score > 0.5
    assert "  3 images, 33 faces in the index\n" in result.stdout
    assert "searching with yaoming.jpg: 1 face, compared with every face" in result.stdout
    rest = re.search(r"the other 32 faces score at most (-?\d\.\d{3});", result.stdout)
    assert rest, result.stdout
    assert float(rest[1]) < 0.3
    assert list(home.iterdir()) == [], "the demo without --data-dir must use a temporary index"


def test_demo_with_a_data_dir_can_be_run_twice(run_cli: Cli, tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    first = ok(run_cli("demo", "--data-dir", data))
    assert "  3 images, 33 faces in the index\n" in first.stdout

    second = ok(run_cli("demo", "--data-dir", data))

    score, name, box = demo_best(second.stdout)
    assert (name, near(box, YAO_BOX)) == ("players.jpg", True)
    assert score > 0.5
    assert as_json(run_cli("stats", "--data-dir", data, "--json"))["faces"] == 33


# -- index, stats, search ---------------------------------------------------------------------


def test_indexing_the_same_photos_twice_adds_nothing(
    run_cli: Cli, home: Path, demo: dict[str, Path]
) -> None:
    first = as_json(run_cli("index", "--json", *gallery(demo)))
    assert {k: first[k] for k in ("images", "indexed", "unchanged", "faces_indexed")} == {
        "images": 3,
        "indexed": 3,
        "unchanged": 0,
        "faces_indexed": 33,
    }
    assert (first["failed"], first["no_faces"], first["ignored"]) == ([], 0, 0)
    stats = as_json(run_cli("stats", "--json"))

    second = as_json(run_cli("index", "--json", *gallery(demo)))

    assert {k: second[k] for k in ("images", "indexed", "unchanged", "faces_indexed")} == {
        "images": 3,
        "indexed": 0,
        "unchanged": 3,
        "faces_indexed": 0,
    }
    assert second["failed"] == []
    again = as_json(run_cli("stats", "--json"))
    assert again == stats
    assert (stats["images"], stats["images_with_faces"], stats["faces"]) == (3, 3, 33)
    assert stats["location"] == str(home / "edge")


def test_index_text_output_and_stats_text_output(run_cli: Cli, demo: dict[str, Path]) -> None:
    result = ok(run_cli("index", demo["gdp"], demo["t1"]))

    assert re.search(
        r"^2 images in \d+\.\d s \(\d+\.\d/s\): 2 indexed, 0 already indexed, 0 skipped; "
        r"11 faces indexed, 0 images without a face$",
        result.stdout,
        re.MULTILINE,
    ), result.stdout
    stats = ok(run_cli("stats")).stdout
    assert re.search(r"^images\s+2 \(2 with faces\)$", stats, re.MULTILINE), stats
    assert re.search(r"^faces\s+11$", stats, re.MULTILINE), stats
    assert re.search(r"^labels\s+none$", stats, re.MULTILINE), stats


def test_indexing_a_folder_with_duplicate_files_twice_reports_all_unchanged(
    run_cli: Cli, tmp_path: Path, demo: dict[str, Path]
) -> None:
    """The same bytes under two names are one image: a second run has nothing to redo."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(demo["t1"], folder / "a.jpg")
    shutil.copy(demo["t1"], folder / "b.jpg")
    first = as_json(run_cli("index", "--json", folder))
    assert first["images"] == 2
    assert as_json(run_cli("stats", "--json"))["faces"] == 6

    second = as_json(run_cli("index", "--json", folder))

    assert (second["indexed"], second["unchanged"]) == (0, 2)
    stats = as_json(run_cli("stats", "--json"))
    assert (stats["images"], stats["faces"]) == (1, 6)


def test_search_json_has_every_face_and_its_matches(
    run_cli: Cli, demo: dict[str, Path], face_models: FaceModels
) -> None:
    ok(run_cli("index", *gallery(demo), "--label", "gallery"))

    found = as_json(run_cli("search", demo["yaoming"], "--json", "--threshold", "-1"))

    assert set(found) == {"query", "model", "threshold", "decisions", "faces"}
    assert found["decisions"] == LFW.decisions(33).as_json()  # the 33 faces indexed
    assert found["query"] == str(demo["yaoming"])
    assert found["model"] == face_models.model_id
    assert found["threshold"] == -1.0
    assert len(found["faces"]) == 1
    face = found["faces"][0]
    assert set(face) == {"index", "box", "det_score", "quality", "matches"}
    assert face["index"] == 0
    assert len(face["box"]) == 4
    assert len(face["matches"]) == 10  # --top-k defaults to 10
    for match in face["matches"]:
        assert set(match) >= {"score", "box", "path", "label", "source_uri", "image_id"}
        assert match["label"] == "gallery"
        assert len(match["box"]) == 4
        assert Path(match["path"]).name in {"players.jpg", "gdp.jpg", "t1.jpg"}
    best = face["matches"][0]
    assert Path(best["path"]) == demo["players"].resolve()
    assert best["image_id"] == sha256(demo["players"])
    assert near(tuple(best["box"]), YAO_BOX)
    assert best["score"] > 0.5
    scores = [m["score"] for m in face["matches"]]
    assert scores == sorted(scores, reverse=True)
    assert all(s < 0.3 for s in scores[1:])


def test_search_text_output_with_the_default_threshold(run_cli: Cli, demo: dict[str, Path]) -> None:
    ok(run_cli("index", *gallery(demo)))

    result = ok(run_cli("search", demo["yaoming"]))

    lines = result.stdout.splitlines()
    decisions = LFW.decisions(33)  # the 33 faces indexed: the per-pair floors hold
    assert lines[0] == (f"{demo['yaoming']}: 1 face (threshold {decisions.possible_threshold:.3f})")
    assert lines[1] == (
        f"gallery of 33 faces: match from {decisions.match_threshold:.3f} "
        f"(FPIR {percent(decisions.match_fpir)}), possible from "
        f"{decisions.possible_threshold:.3f} (FPIR {percent(decisions.possible_fpir)})"
    )
    assert re.fullmatch(r"face 1: x \d+-\d+, y \d+-\d+, detector 0\.\d\d", lines[2]), lines[2]
    rows = [line for line in lines[4:] if line.strip()]
    assert len(rows) == 1, result.stdout
    assert rows[0].endswith(str(demo["players"].resolve()))


def test_search_reads_the_query_from_stdin_and_honours_top_k(
    run_cli: Cli, demo: dict[str, Path]
) -> None:
    ok(run_cli("index", *gallery(demo)))

    query = demo["yaoming"].read_bytes()
    found = as_json(
        run_cli("search", "-", "--json", "--top-k", "3", "--threshold", "0", stdin=query)
    )

    assert found["query"] == "-"
    matches = found["faces"][0]["matches"]
    assert len(matches) == 3
    assert Path(matches[0]["path"]).name == "players.jpg"


def test_search_filters_by_collection_and_label(run_cli: Cli, demo: dict[str, Path]) -> None:
    ok(run_cli("index", demo["players"], "--collection", "sports", "--label", "team"))
    ok(run_cli("index", demo["gdp"], demo["t1"]))

    def paths(*options: str) -> list[str]:
        found = as_json(run_cli("search", demo["yaoming"], "--json", "--threshold", "-1", *options))
        return [Path(m["path"]).name for m in found["faces"][0]["matches"]]

    in_default = paths("--collection", "default", "--top-k", "100")
    assert sorted(set(in_default)) == ["gdp.jpg", "t1.jpg"]
    assert len(in_default) == 11
    assert paths("--collection", "sports", "--top-k", "100") == ["players.jpg"] * 22
    assert paths("--label", "team", "--top-k", "100") == ["players.jpg"] * 22
    assert paths("--label", "nobody") == []


def test_search_with_a_photo_without_a_face_fails_cleanly(
    run_cli: Cli, demo: dict[str, Path], tmp_path: Path, grey_jpeg: Callable[[Path], Path]
) -> None:
    ok(run_cli("index", demo["gdp"]))
    grey = grey_jpeg(tmp_path / "grey.jpg")

    result = run_cli("search", grey)

    assert result.returncode == 1
    assert result.stderr.strip() == f"facesearch: error: no face found in {grey}"
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_search_with_a_missing_file_fails_cleanly(run_cli: Cli, tmp_path: Path) -> None:
    result = run_cli("search", tmp_path / "nowhere.jpg")

    assert result.returncode == 1
    assert "facesearch: error: cannot read the query image" in result.stderr
    assert "No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


# -- labels and delete ------------------------------------------------------------------------


@pytest.fixture
def people(tmp_path: Path, demo: dict[str, Path]) -> Path:
    """people/alice/players.jpg, people/bob/{gdp,t1}.jpg and a README that is not an image."""
    root = tmp_path / "people"
    (root / "alice").mkdir(parents=True)
    (root / "bob").mkdir()
    shutil.copy(demo["players"], root / "alice" / "players.jpg")
    shutil.copy(demo["gdp"], root / "bob" / "gdp.jpg")
    shutil.copy(demo["t1"], root / "bob" / "t1.jpg")
    (root / "README.txt").write_text("not a photo\n")
    return root


def test_label_from_dir_labels_faces_with_their_folder_name(
    run_cli: Cli, people: Path, demo: dict[str, Path]
) -> None:
    summary = as_json(run_cli("index", "--label-from-dir", "--json", people))
    assert (summary["indexed"], summary["faces_indexed"], summary["ignored"]) == (3, 33, 1)

    stats = as_json(run_cli("stats", "--json"))
    found = as_json(run_cli("search", demo["yaoming"], "--json", "--label", "alice"))

    assert stats["labels"] == {"alice": 1, "bob": 2}
    best = found["faces"][0]["matches"][0]
    assert (best["label"], Path(best["path"]).name) == ("alice", "players.jpg")
    assert Path(best["path"]) == (people / "alice" / "players.jpg").resolve()


def test_label_and_label_from_dir_together_is_a_usage_error(run_cli: Cli, people: Path) -> None:
    result = run_cli("index", "--label", "x", "--label-from-dir", people)

    assert result.returncode == 2
    assert "give --label or --label-from-dir, not both" in result.stderr
    assert "Traceback" not in result.stderr


def test_delete_by_label(run_cli: Cli, people: Path) -> None:
    ok(run_cli("index", "--label-from-dir", people))

    started = datetime.now(UTC)
    deleted = as_json(run_cli("delete", "--label", "bob", "--json"))

    assert counts(deleted) == (2, 11)
    assert (deleted["selector"], deleted["collections"]) == ({"label": "bob"}, {"default": 2})
    assert re.fullmatch(r"[0-9a-f]{32}", deleted["receipt_id"])
    deleted_at = datetime.fromisoformat(deleted["deleted_at"])
    assert started <= deleted_at <= datetime.now(UTC)
    stats = as_json(run_cli("stats", "--json"))
    assert (stats["images"], stats["faces"], stats["labels"]) == (1, 22, {"alice": 1})
    again = ok(run_cli("delete", "--label", "bob")).stdout.splitlines()
    assert again[0] == "deleted 0 faces of 0 images"
    assert [line.split()[0] for line in again[1:]] == ["receipt", "at", "selector", "collections"]
    assert again[3:] == ["selector    label=bob", "collections none"]
    assert again[1] != f"receipt     {deleted['receipt_id']}"


def counts(receipt: dict[str, Any]) -> tuple[int, int]:
    return receipt["images"], receipt["faces"]


def test_delete_by_image_path_and_by_image_id(run_cli: Cli, demo: dict[str, Path]) -> None:
    ok(run_cli("index", *gallery(demo)))

    by_path = as_json(run_cli("delete", "--image", demo["players"], "--json"))
    by_id = ok(run_cli("delete", "--image", sha256(demo["gdp"]).upper()))

    assert counts(by_path) == (1, 22)
    assert by_path["selector"] == {"image_id": sha256(demo["players"])}
    assert by_id.stdout.splitlines()[0] == "deleted 5 faces of 1 images"
    assert f"selector    image_id={sha256(demo['gdp'])}" in by_id.stdout.splitlines()
    stats = as_json(run_cli("stats", "--json"))
    assert (stats["images"], stats["faces"]) == (1, 6)
    found = as_json(run_cli("search", demo["yaoming"], "--json", "--threshold", "-1"))
    assert {Path(m["path"]).name for m in found["faces"][0]["matches"]} == {"t1.jpg"}


def test_delete_by_source_url(run_cli: Cli, demo: dict[str, Path]) -> None:
    url = "https://example.org/album/1"
    ok(run_cli("index", demo["gdp"], demo["t1"], "--source-url", url))
    ok(run_cli("index", demo["players"]))
    found = as_json(run_cli("search", demo["yaoming"], "--json", "--threshold", "-1"))
    sources = {m["source_uri"] for m in found["faces"][0]["matches"]}
    assert sources == {url, str(demo["players"].resolve())}

    deleted = as_json(run_cli("delete", "--source-url", url, "--json"))

    assert counts(deleted) == (2, 11)
    assert deleted["selector"] == {"source_uri": url}
    stats = as_json(run_cli("stats", "--json"))
    assert (stats["images"], stats["faces"]) == (1, 22)


@pytest.mark.parametrize(
    "options",
    [[], ["--label", "a", "--source-url", "b"]],
    ids=["none", "two"],
)
def test_delete_needs_exactly_one_selector(run_cli: Cli, options: list[str]) -> None:
    result = run_cli("delete", *options)

    assert result.returncode == 2
    assert "give exactly one of --image, --label, --source-url" in result.stderr
    assert "Traceback" not in result.stderr


def test_delete_of_an_image_that_is_neither_a_file_nor_an_id(run_cli: Cli) -> None:
    result = run_cli("delete", "--image", "holiday.jpg")

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "facesearch: error: holiday.jpg is neither a file nor an image id (64 hex digits)"
    )


# -- the data directory -----------------------------------------------------------------------


def test_an_index_in_use_is_reported_not_a_traceback(
    run_cli: Cli, home: Path, face_models: FaceModels
) -> None:
    store = EdgeFaceStore.open(face_models.model_id, face_models.dim, home / "edge")
    try:
        result = run_cli("stats")
    finally:
        store.close()

    assert result.returncode == 1
    assert "is in use by another facesearch process" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_index_of_another_model_is_refused(
    run_cli: Cli, home: Path, face_models: FaceModels, demo: dict[str, Path]
) -> None:
    store = EdgeFaceStore.open("other-model", face_models.dim, home / "edge")
    store.close()

    result = run_cli("index", demo["gdp"])

    assert result.returncode == 1
    assert "holds faces of other-model" in result.stderr
    assert face_models.model_id in result.stderr
    assert "Traceback" not in result.stderr


def test_an_index_an_older_facesearch_left_in_local_mode_is_moved_into_edge_and_kept(
    run_cli: Cli, run_with_env: Cli, home: Path, demo: dict[str, Path]
) -> None:
    older = {k: v for k, v in os.environ.items() if not k.startswith(("FACESEARCH_", "QDRANT_"))}
    older.update(FACESEARCH_HOME=str(home), FACESEARCH_STORE="local")
    ok(run_with_env(older, "index", *gallery(demo), "--label", "gallery"))
    before = as_json(run_with_env(older, "search", demo["yaoming"], "--json"))

    moved = run_cli("search", demo["yaoming"], "--json")

    assert as_json(moved) == before
    assert f"moving the index at {home / 'qdrant'}" in moved.stderr
    assert f"{home / 'qdrant.migrated'} can be deleted" in moved.stderr
    assert (home / "qdrant.migrated" / "meta.json").is_file()
    assert not (home / "qdrant").exists()
    again = run_cli("search", demo["yaoming"], "--json")
    assert as_json(again) == before
    assert again.stderr == ""


def test_data_dir_wins_over_facesearch_home(
    run_cli: Cli, home: Path, tmp_path: Path, demo: dict[str, Path]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    ok(run_cli("index", demo["gdp"], "--data-dir", elsewhere))

    there = as_json(run_cli("stats", "--json", "--data-dir", elsewhere))
    here = as_json(run_cli("stats", "--json"))

    assert (there["faces"], there["location"]) == (5, str(elsewhere / "edge"))
    assert (here["faces"], here["location"]) == (0, str(home / "edge"))


# -- help -------------------------------------------------------------------------------------

HELP = {
    "demo": ["--data-dir", "--help"],
    "index": [
        "--label",
        "--label-from-dir",
        "--source-url",
        "--collection",
        "--data-dir",
        "--json",
        "--help",
    ],
    "search": [
        "--top-k",
        "--threshold",
        "--label",
        "--collection",
        "--data-dir",
        "--json",
        "--help",
    ],
    "compare": ["--tolerance", "--show-distance", "--help"],
    "delete": ["--image", "--label", "--source-url", "--data-dir", "--json", "--help"],
    "stats": ["--data-dir", "--json", "--gateway", "--tls-ca", "--tls-cert", "--tls-key", "--help"],
    "eval lfw": ["--root", "--pairs", "--json", "--help"],
}


@pytest.mark.parametrize("command", sorted(HELP))
def test_help_of_every_command_names_each_option(run_cli: Cli, command: str) -> None:
    result = ok(run_cli(*command.split(), "--help"))

    assert result.stdout.startswith(f"Usage: facesearch {command} [OPTIONS]")
    for option in HELP[command]:
        assert re.search(rf"(^|[\s,]){re.escape(option)}\b(?!-)", result.stdout), option


def test_top_level_help_and_version(run_cli: Cli) -> None:
    result = ok(run_cli("-h"))
    version = ok(run_cli("--version"))

    for command in ("compare", "delete", "demo", "eval", "index", "search", "stats"):
        assert re.search(rf"^  {command}\s", result.stdout, re.MULTILINE), command
    assert "Exit status: 0 done; 1 error; 2 bad usage; 3 done" in result.stdout
    assert version.stdout.strip() == f"facesearch, version {__version__}"
