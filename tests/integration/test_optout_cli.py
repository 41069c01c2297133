"""``facesearch optout`` on the embedded index, as a subprocess: the indexed face erased with a
receipt, kept out when indexed again, never found by a search at any threshold; a photo with
no face or several faces refused in one line, nothing else changed; list and remove."""

import subprocess
from collections.abc import Callable
from pathlib import Path

from cli_checks import as_json, ok

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_an_opt_out_erases_keeps_out_and_withholds_the_face(
    run_cli: Cli, demo: dict[str, Path]
) -> None:
    ok(run_cli("index", demo["players"], demo["gdp"], demo["t1"], "--collection", "news"))
    before = as_json(run_cli("stats", "--json"))["faces"]

    added = as_json(run_cli("optout", "add", demo["yaoming"], "--note", "ticket 1", "--json"))

    receipt = added["erased"]
    assert (receipt["faces"], receipt["images"], receipt["collections"]) == (1, 1, {"news": 1})
    assert receipt["receipt_id"] and receipt["erased_at"]
    assert added["optout"]["note"] == "ticket 1"
    assert as_json(run_cli("stats", "--json"))["faces"] == before - 1
    found = as_json(run_cli("search", demo["yaoming"], "--json", "--threshold", "-1"))
    assert [face["matches"] for face in found["faces"]] == [[]]

    indexed = as_json(run_cli("index", demo["yaoming"], "--label", "yao", "--json"))
    assert indexed["faces_indexed"] == 0
    assert [f["reason"] for f in indexed["unindexed_faces"]] == ["opted_out"]
    text = ok(run_cli("index", demo["players"], "--label", "again"))
    assert "faces not indexed because they match an opt-out: 1" in text.stdout

    listed = as_json(run_cli("optout", "list", "--json"))
    (entry,) = listed["optouts"]
    assert entry["optout_id"] == added["optout"]["optout_id"] and listed["threshold"] > 0.25
    removed = ok(run_cli("optout", "remove", entry["optout_id"]))
    assert removed.stdout == f"removed {entry['optout_id']}\n"
    assert as_json(run_cli("optout", "list", "--json"))["optouts"] == []
    gone = run_cli("optout", "remove", entry["optout_id"])
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"facesearch: error: no opt-out '{entry['optout_id']}'")


def test_an_opt_out_photo_with_several_faces_or_none_is_refused_and_changes_nothing(
    run_cli: Cli, demo: dict[str, Path], grey_jpeg: Callable[[Path], Path], tmp_path: Path
) -> None:
    ok(run_cli("index", demo["players"]))
    stats = as_json(run_cli("stats", "--json"))

    several = run_cli("optout", "add", demo["gdp"])
    none = run_cli("optout", "add", grey_jpeg(tmp_path / "grey.jpg"))
    wrong = run_cli("optout", "add", demo["gdp"], "--face-index", "99")

    assert several.returncode == none.returncode == wrong.returncode == 1
    assert several.stderr.startswith("facesearch: error: the opt-out photo has 5 faces; say ")
    assert "--face-index" in several.stderr and "0 at (" in several.stderr
    assert len(several.stderr.splitlines()) == 1 and "Traceback" not in several.stderr
    assert none.stderr == (
        "facesearch: error: no face found in the opt-out photo; send a photo that shows the face\n"
    )
    assert "has no face 99; its faces: 0 at (" in wrong.stderr
    assert as_json(run_cli("optout", "list", "--json"))["optouts"] == []
    assert as_json(run_cli("stats", "--json")) == stats

    chosen = as_json(run_cli("optout", "add", demo["gdp"], "--face-index", "0", "--json"))
    assert chosen["erased"]["faces"] == 0  # gdp's people are not in players.jpg
