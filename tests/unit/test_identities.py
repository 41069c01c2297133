"""Answers per person: grouping matches by label, the joint (Hungarian) assignment of people to
the faces of one query image, and the JSON and text of --by-person."""

import json
from pathlib import Path

import pytest

from facesearch.calibration import Decisions
from facesearch.cli import output
from facesearch.cli.main import show_found
from facesearch.identities import assign_labels, by_person, label_by_name, people_of
from facesearch.indexing import InputFile
from facesearch.records import Match, Rejection
from facesearch.searching import Found, QueryFace

DECISIONS = Decisions(12_345, 0.37, 0.33, 0.01, 0.1)


def match(score: float, label: str, image: str = "a", face_index: int = 0) -> Match:
    return Match(
        score=score,
        image_id=image * 64,
        face_index=face_index,
        box=(10.0, 20.0, 50.0, 70.0),
        source_uri=f"/photos/{image}.jpg",
        path=f"/photos/{image}.jpg",
        label=label,
        collection="default",
        det_score=0.8,
        decision=DECISIONS.decide(score),
    )


def query_face(index: int, matches: list[Match]) -> QueryFace:
    return QueryFace(index, (0.0, 0.0, 40.0, 40.0), 0.8, 0.5, matches)


# --- grouping ---------------------------------------------------------------------------------


def test_matches_are_grouped_by_label_with_the_best_appearance() -> None:
    matches = [
        match(0.7, "ann", "a"),
        match(0.9, "bob", "b"),
        match(0.8, "ann", "c"),
        match(0.6, "", "d"),
        match(0.5, "ann", "e"),
    ]
    people = people_of(matches)

    assert [(p.label, p.score, p.appearances) for p in people] == [
        ("bob", 0.9, 1),
        ("ann", 0.8, 3),
    ]
    assert people[1].best.path == "/photos/c.jpg"


def test_unlabelled_matches_are_left_out_and_counted() -> None:
    (answer,) = by_person([query_face(0, [match(0.9, ""), match(0.8, ""), match(0.4, "ann")])], 0.3)
    assert [p.label for p in answer.people] == ["ann"]
    assert answer.unlabelled == 2


# --- the assignment ---------------------------------------------------------------------------


def test_hungarian_avoids_giving_one_person_to_two_faces() -> None:
    """Each face's best alone names x twice; the best pair first (A-x 0.9) leaves B with y at
    0.3. Jointly A-y + B-x = 1.65 beats A-x + B-y = 1.2."""
    scores = [{"x": 0.9, "y": 0.8}, {"x": 0.85, "y": 0.3}]
    per_face_best = [max(row, key=row.__getitem__) for row in scores]
    assert per_face_best == ["x", "x"]

    assert assign_labels(scores) == {0: "y", 1: "x"}


def test_a_weak_second_face_does_not_steal_a_strong_match() -> None:
    """Pairs count by score, not by number: A is x (0.9), B (x at 0.35 only) is nobody."""
    assert assign_labels([{"x": 0.9, "y": 0.3}, {"x": 0.35}]) == {0: "x"}


def test_no_pair_is_made_without_a_positive_score() -> None:
    assert assign_labels([{"x": -0.2}, {}]) == {}
    assert assign_labels([]) == {}


def test_more_faces_than_people_leaves_faces_without_one() -> None:
    assert assign_labels([{"x": 0.5}, {"x": 0.7}, {"x": 0.6}]) == {1: "x"}


def test_by_person_names_each_person_once_per_query_image() -> None:
    faces = [
        query_face(0, [match(0.9, "x", "p"), match(0.8, "y", "q"), match(0.6, "x", "r")]),
        query_face(1, [match(0.85, "x", "s"), match(0.3, "y", "t"), match(0.4, "z", "u")]),
    ]
    first, second = by_person(faces, 0.3, everyone=True)

    assert (first.identified, [p.label for p in first.people]) == (True, ["y"])
    assert (second.identified, [p.label for p in second.people]) == (True, ["x", "z"])
    assert second.people[0].appearances == 1  # counted among face 2's own matches
    labels = [p.label for answer in (first, second) for p in answer.people]
    assert len(labels) == len(set(labels))


def test_a_face_whose_only_person_went_elsewhere_is_nobody() -> None:
    first, second = by_person(
        [query_face(0, [match(0.9, "x")]), query_face(1, [match(0.35, "x")])], 0.3, everyone=True
    )
    assert [p.label for p in first.people] == ["x"]
    assert (second.identified, second.people) == (False, [])


def test_a_person_no_face_was_given_goes_under_the_face_it_resembles_most() -> None:
    faces = [
        query_face(0, [match(0.9, "x"), match(0.5, "w")]),
        query_face(1, [match(0.8, "y"), match(0.6, "w")]),
    ]
    first, second = by_person(faces, 0.3, everyone=True)
    assert [p.label for p in first.people] == ["x"]
    assert [p.label for p in second.people] == ["y", "w"]


def test_without_everyone_each_face_lists_only_its_person() -> None:
    faces = [
        query_face(0, [match(0.9, "x"), match(0.5, "w")]),
        query_face(1, [match(0.8, "y"), match(0.6, "w")]),
    ]
    first, second = by_person(faces, 0.3)
    assert [p.label for p in first.people] == ["x"]
    assert [p.label for p in second.people] == ["y"]


def test_nobody_below_the_match_threshold_is_given_a_face() -> None:
    faces = [query_face(0, [match(0.45, "x"), match(0.3, "w")])]

    (strict,) = by_person(faces, 0.5)
    (listed,) = by_person(faces, 0.5, everyone=True)

    assert (strict.identified, strict.people) == (False, [])
    assert (listed.identified, [p.label for p in listed.people]) == (False, ["x", "w"])


# --- labels from names ------------------------------------------------------------------------


def test_label_by_name_is_compares_known_folder_convention() -> None:
    inputs = [InputFile(Path("/k/alice.jpg"), ""), InputFile(Path("/k/sub/bob.smith.png"), "x")]
    assert [i.label for i in label_by_name(inputs)] == ["alice", "bob.smith"]


# --- output -----------------------------------------------------------------------------------


def test_by_person_json() -> None:
    (answer,) = by_person([query_face(2, [match(0.81234, "ann", "b"), match(0.5, "")])], 0.3)

    data = output.face_people_json(answer)

    assert data["index"] == 2
    assert data["person"] == "ann"
    assert data["unlabelled_matches"] == 1
    (person,) = data["people"]
    assert (person["label"], person["score"], person["appearances"]) == ("ann", 0.8123, 1)
    assert person["best"]["path"] == "/photos/b.jpg"
    assert person["best"]["box"] == [10.0, 20.0, 50.0, 70.0]


def test_by_person_text(capsys: pytest.CaptureFixture[str]) -> None:
    faces = [query_face(0, [match(0.8, "ann")]), query_face(1, [])]
    found = Found(faces, "m", 0.253, DECISIONS)

    output.print_by_person("q.jpg", by_person(faces, 0.3), found)

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "q.jpg: 2 faces (threshold 0.253), by person"
    assert lines[1] == (
        "gallery of 12,345 faces: match from 0.370 (FPIR 1%), possible from 0.330 (FPIR 10%)"
    )
    assert lines[4].split()[:4] == ["0.800", "match", "1", "ann"]
    assert lines[4].endswith("/photos/a.jpg")
    assert lines[6] == "  no labelled person at or above the match threshold"


def test_search_json_by_person_and_its_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    """What `search --by-person --json` prints, from a search's answer (embedded or through a
    gateway: the grouping is done here)."""
    blurred = QueryFace(1, (0.0, 0.0, 9.0, 9.0), 0.6, 0.1, [], Rejection("blurred", 2.5, 3.0))
    faces = [query_face(0, [match(0.8, "ann"), match(0.4, "")]), blurred]
    found = Found(faces, "m", 0.253, DECISIONS)

    show_found("q.jpg", found, by_person=True, everyone=False, as_json=True)

    data = json.loads(capsys.readouterr().out)
    assert [f["person"] for f in data["faces"]] == ["ann", None]
    assert data["warnings"] == [{"face": 1, "reason": "blurred", "value": 2.5, "limit": 3.0}]
    assert data["decisions"] == {
        "gallery_faces": 12345,
        "match_threshold": 0.37,
        "possible_threshold": 0.33,
        "match_fpir": 0.01,
        "possible_fpir": 0.1,
    }


def test_a_good_query_has_no_warnings_key(capsys: pytest.CaptureFixture[str]) -> None:
    found = Found([query_face(0, [])], "m", 0.253, DECISIONS)
    show_found("q.jpg", found, by_person=False, everyone=False, as_json=True)
    assert set(json.loads(capsys.readouterr().out)) == {
        "query",
        "model",
        "threshold",
        "decisions",
        "faces",
    }
