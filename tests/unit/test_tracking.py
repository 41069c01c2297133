"""Face tracks from synthetic boxes and vectors: who links to whom, when a track ends, which
faces it keeps."""

import numpy as np

from facesearch.records import Box
from facesearch.tracking import Observation, Track, Tracker, TrackerSettings, iou

DIM = 16


def unit(person: int) -> np.ndarray:
    """A person's embedding: basis vectors, so different people score exactly 0."""
    vector: np.ndarray = np.eye(DIM)[person]
    return vector


def blend(a: np.ndarray, b: np.ndarray, weight_b: float) -> np.ndarray:
    """A unit vector between ``a`` and ``b``: the same person, seen a little differently."""
    mixed = (1 - weight_b) * a + weight_b * b
    return mixed / np.linalg.norm(mixed)


def face(ms: int, box: Box, vector: np.ndarray, quality: float = 0.5) -> Observation:
    return Observation(ms, box, quality, 0.9, vector)


def run(
    frames: list[list[Observation]], cuts: set[int] | None = None, **settings: float
) -> list[Track]:
    tracker = Tracker(TrackerSettings(**settings))  # type: ignore[arg-type]
    for number, observations in enumerate(frames):
        tracker.update(observations, number in (cuts or set()))
    return tracker.finish()


def test_iou_of_identical_disjoint_and_half_overlapping_boxes() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == 50 / 150
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_one_person_across_frames_is_one_track_with_its_times() -> None:
    person = unit(1)
    frames = [
        [face(ms, (10 + ms / 100, 10, 60 + ms / 100, 70), person)] for ms in range(0, 3000, 500)
    ]
    (track,) = run(frames)
    assert (track.first_ms, track.last_ms, track.faces_seen) == (0, 2500, 6)


def test_two_people_stay_apart_even_when_their_boxes_swap() -> None:
    a, b = unit(1), unit(2)
    left, right = (0.0, 0.0, 50.0, 50.0), (100.0, 0.0, 150.0, 50.0)
    frames = [
        [face(0, left, a), face(0, right, b)],
        [face(500, right, a), face(500, left, b)],  # they crossed: boxes say the opposite
    ]
    tracks = run(frames)
    assert len(tracks) == 2
    for track, person in zip(tracks, (a, b), strict=True):
        assert all(np.allclose(o.vector, person) for o in track.best)


def test_overlap_links_a_face_whose_embedding_alone_is_not_enough() -> None:
    person = unit(1)
    blurred = blend(person, unit(9), 0.75)  # a turned head: similarity about 0.3
    similarity = float(person @ blurred)
    assert 0.25 <= similarity < 0.45
    box = (10.0, 10.0, 60.0, 70.0)
    assert len(run([[face(0, box, person)], [face(500, box, blurred)]])) == 1
    far = (300.0, 10.0, 350.0, 70.0)
    assert len(run([[face(0, box, person)], [face(500, far, blurred)]])) == 2


def test_after_a_scene_cut_boxes_do_not_link_faces() -> None:
    person, other = unit(1), unit(2)
    box = (10.0, 10.0, 60.0, 70.0)
    other_like = blend(person, other, 0.75)
    tracks = run([[face(0, box, person)], [face(500, box, other_like)]], cuts={1})
    assert len(tracks) == 2


def test_a_track_ends_after_max_misses_samples_without_its_face() -> None:
    person = unit(1)
    box = (10.0, 10.0, 60.0, 70.0)
    gap_of_two = [[face(0, box, person)], [], [], [face(1500, box, person)]]
    assert len(run(gap_of_two, max_misses=3)) == 1
    gap_of_three = [[face(0, box, person)], [], [], [], [face(2000, box, person)]]
    tracks = run(gap_of_three, max_misses=3)
    assert [(t.first_ms, t.last_ms) for t in tracks] == [(0, 0), (2000, 2000)]


def test_a_track_keeps_its_best_faces_by_quality() -> None:
    person = unit(1)
    box = (10.0, 10.0, 60.0, 70.0)
    qualities = [0.2, 0.9, 0.1, 0.7, 0.8, 0.3]
    frames = [[face(i * 500, box, person, q)] for i, q in enumerate(qualities)]
    (track,) = run(frames, keep=3)
    assert [o.quality for o in track.best] == [0.9, 0.8, 0.7]
    assert track.best_ms == 500
    assert (track.first_ms, track.last_ms, track.faces_seen) == (0, 2500, 6)


def test_tracks_come_out_in_order_of_first_appearance_with_sequential_ids() -> None:
    a, b, c = unit(1), unit(2), unit(3)
    frames = [
        [face(0, (0, 0, 10, 10), b)],
        [face(500, (0, 0, 10, 10), b), face(500, (50, 0, 60, 10), a)],
        [],
        [],
        [],
        [face(2500, (90, 0, 99, 10), c)],
    ]
    tracks = run(frames)
    assert [(t.track_id, t.first_ms) for t in tracks] == [(0, 0), (1, 500), (2, 2500)]


def test_one_face_never_joins_two_tracks() -> None:
    person = unit(1)
    box = (10.0, 10.0, 60.0, 70.0)
    # Two faces of one frame that both look like the person (a mirror, a poster).
    frames = [[face(0, box, person), face(0, (200, 10, 250, 70), person)], [face(500, box, person)]]
    tracks = run(frames)
    assert sorted(t.faces_seen for t in tracks) == [1, 2]
