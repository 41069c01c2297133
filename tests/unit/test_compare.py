"""compare: who among the known people is within tolerance, printed as face_recognition does."""

import math

import numpy as np
import pytest

from facesearch.calibration import similarity_to_distance
from facesearch.compare import known_within, largest, names_of, result_lines


def unit(angle_degrees: float) -> np.ndarray:
    """A unit vector in the plane at this angle from the x axis (cosine similarity = cos)."""
    angle = math.radians(angle_degrees)
    return np.array([math.cos(angle), math.sin(angle)], dtype=np.float32)


def with_similarity(similarity: float) -> np.ndarray:
    return np.array([similarity, math.sqrt(1.0 - similarity**2)], dtype=np.float64)


def within(
    known: dict[str, np.ndarray], query: np.ndarray, tolerance: float
) -> list[tuple[str, float]]:
    """known_within for a query vector: its similarity to each known vector, as compare's
    embedded and gateway comparers both give it."""
    similarities = [float(np.dot(vector, query)) for vector in known.values()]
    return known_within(list(known), similarities, tolerance)


def test_known_within_keeps_the_known_order_and_distances() -> None:
    known = {"obama": unit(0), "biden": unit(90), "obama_again": unit(10)}
    found = within(known, unit(5), tolerance=0.1)
    assert [name for name, _ in found] == ["obama", "obama_again"]
    expected = 1.0 - math.cos(math.radians(5))
    for _, distance in found:
        assert distance == pytest.approx(expected, abs=1e-6)


def test_known_within_is_inclusive_and_tolerance_bounds_it() -> None:
    known = {"a": with_similarity(1.0), "b": with_similarity(0.5)}
    query = np.array([1.0, 0.0])
    assert within(known, query, tolerance=0.5) == [("a", 0.0), ("b", 0.5)]
    assert [n for n, _ in within(known, query, tolerance=0.49)] == ["a"]
    assert within(known, -query, tolerance=0.5) == []


def test_distance_scale_matches_the_calibration() -> None:
    assert similarity_to_distance(1.0) == 0.0
    assert similarity_to_distance(-1.0) == 2.0


def test_each_face_gets_one_name_and_each_name_one_face() -> None:
    names = ["ann", "bob", "cy"]
    rows = [[0.9, 0.8, 0.1], [0.85, 0.5, 0.1], [0.1, 0.2, 0.3]]  # face 1 is most like ann too

    per_face = names_of(names, rows, tolerance=0.6, everyone=False)

    # Jointly: ann to face 1 and bob to face 0 (0.8 + 0.85) beats ann to face 0 (0.9 + 0.5).
    assert [[n for n, _ in found] for found in per_face] == [["bob"], ["ann"], []]
    assert per_face[0][0][1] == pytest.approx(0.2)


def test_all_gives_every_name_within_tolerance() -> None:
    rows = [[0.9, 0.8, 0.1], [0.85, 0.5, 0.1]]

    per_face = names_of(["ann", "bob", "cy"], rows, tolerance=0.6, everyone=True)

    assert [[n for n, _ in found] for found in per_face] == [["ann", "bob"], ["ann", "bob"]]


def test_a_name_with_two_photos_counts_its_closest() -> None:
    ((name, distance),) = names_of(["ann", "ann"], [[0.5, 0.7]], tolerance=0.6, everyone=False)[0]

    assert name == "ann"
    assert distance == pytest.approx(0.3)


def test_result_lines_name_only() -> None:
    assert result_lines("unknown/a.jpg", [[("obama", 0.2)]], show_distance=False) == [
        "unknown/a.jpg,obama"
    ]


def test_result_lines_with_distance_has_four_decimals() -> None:
    lines = result_lines("u/b.jpg", [[("biden", 0.123449)], [("obama", 0.5)]], True)
    assert lines == ["u/b.jpg,biden,0.1234", "u/b.jpg,obama,0.5000"]


def test_face_matching_nobody_is_unknown_person() -> None:
    assert result_lines("u/c.png", [[]], show_distance=False) == ["u/c.png,unknown_person"]
    assert result_lines("u/c.png", [[]], show_distance=True) == ["u/c.png,unknown_person"]


def test_image_without_faces_is_no_persons_found() -> None:
    assert result_lines("u/d.jpg", [], show_distance=False) == ["u/d.jpg,no_persons_found"]
    assert result_lines("u/d.jpg", [], show_distance=True) == ["u/d.jpg,no_persons_found"]


def test_several_faces_and_matches_print_one_line_each_in_order() -> None:
    per_face = [
        [("obama", 0.3), ("obama_young", 0.35)],
        [],
        [("biden", 0.1)],
    ]
    assert result_lines("group.jpg", per_face, show_distance=False) == [
        "group.jpg,obama",
        "group.jpg,obama_young",
        "group.jpg,unknown_person",
        "group.jpg,biden",
    ]


def test_known_within_then_result_lines_end_to_end() -> None:
    known = {"alice": with_similarity(1.0), "bob": unit(90)}
    query = with_similarity(0.8766)  # distance 0.1234 from alice, far from bob
    per_face = [within(known, query, 0.2), within(known, -query, 0.2)]
    assert result_lines("x.jpg", per_face, show_distance=True) == [
        "x.jpg,alice,0.1234",
        "x.jpg,unknown_person",
    ]


def test_a_known_photo_stands_for_its_largest_face() -> None:
    boxes = [(0.0, 0.0, 30.0, 30.0), (50.0, 0.0, 130.0, 90.0), (200.0, 0.0, 240.0, 40.0)]

    assert largest(boxes) == 1
    assert largest(boxes[:1]) == 0
