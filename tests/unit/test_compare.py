"""compare: who among the known people is within tolerance, printed as face_recognition does."""

import math

import numpy as np
import pytest

from facesearch.calibration import DEFAULT_TOLERANCE, LFW_THRESHOLD, similarity_to_distance
from facesearch.compare import known_within, result_lines


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
    assert abs(DEFAULT_TOLERANCE - (1.0 - LFW_THRESHOLD)) <= 5e-4
    # A face exactly at the LFW threshold is within the default tolerance, just below is not.
    known = {"x": np.array([1.0, 0.0])}
    assert within(known, with_similarity(LFW_THRESHOLD), DEFAULT_TOLERANCE)
    assert not within(known, with_similarity(LFW_THRESHOLD - 0.01), DEFAULT_TOLERANCE)


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
