"""The quality gate on synthetic faces: which faces are kept out of the index and why, the yaw
proxy from 5 landmarks, its settings, and how the summary reports unindexed faces."""

import numpy as np
import pytest

from facesearch.cli import output
from facesearch.errors import ConfigError
from facesearch.faces import (
    ARCFACE_LANDMARKS,
    DetectedFace,
    check_quality,
    sharpness,
    yaw_proxy,
)
from facesearch.indexing import Outcome, Summary
from facesearch.pipeline import AnalyzedImage, apply_gate
from facesearch.records import Rejection, UnindexedFace
from facesearch.settings import CoreSettings, QualityGate

GATE = QualityGate(min_face_px=32.0, min_sharpness=20.0, max_yaw=1.0, min_det_score=0.6)


def sharp_crop() -> np.ndarray:
    """A 112x112 checkerboard: as much detail as a crop can have."""
    tiles = (np.indices((112, 112)).sum(axis=0) // 4) % 2
    return np.repeat((tiles * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def flat_crop() -> np.ndarray:
    return np.full((112, 112, 3), 128, dtype=np.uint8)


def face(
    side: float = 100.0,
    det_score: float = 0.8,
    crop: np.ndarray | None = None,
    landmarks: np.ndarray = ARCFACE_LANDMARKS,
    index: int = 0,
) -> DetectedFace:
    crop = sharp_crop() if crop is None else crop
    box = (10.0, 20.0, 10.0 + side, 20.0 + side * 1.2)
    return DetectedFace(index, box, det_score, landmarks.copy(), crop, 0.5)


def turned(landmarks: np.ndarray, nose_shift: float) -> np.ndarray:
    """The landmarks with the nose moved sideways by ``nose_shift`` eye distances."""
    moved = landmarks.copy()
    moved[2, 0] += nose_shift * float(np.linalg.norm(landmarks[1] - landmarks[0]))
    return moved


def rotated(landmarks: np.ndarray, degrees: float, scale: float) -> np.ndarray:
    angle = np.radians(degrees)
    matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved: np.ndarray = landmarks @ matrix.T * scale + np.array([300.0, -40.0])
    return moved


# --- measures ---------------------------------------------------------------------------------


def test_a_frontal_face_has_a_yaw_proxy_near_zero() -> None:
    assert yaw_proxy(ARCFACE_LANDMARKS) < 0.01


@pytest.mark.parametrize("shift", [0.25, 0.5, 1.2])
def test_the_yaw_proxy_is_the_nose_offset_in_eye_distances(shift: float) -> None:
    assert yaw_proxy(turned(ARCFACE_LANDMARKS, shift)) == pytest.approx(shift, abs=0.01)
    assert yaw_proxy(turned(ARCFACE_LANDMARKS, -shift)) == pytest.approx(shift, abs=0.01)


def test_the_yaw_proxy_ignores_roll_scale_and_position() -> None:
    """A tilted head (roll) or a bigger face is not a turned one."""
    base = turned(ARCFACE_LANDMARKS, 0.4)
    for degrees, scale in [(30.0, 1.0), (-45.0, 3.0), (90.0, 0.5)]:
        assert yaw_proxy(rotated(base, degrees, scale)) == pytest.approx(0.4, abs=0.01)


def test_collapsed_landmarks_count_as_the_most_extreme_pose() -> None:
    collapsed = np.repeat(ARCFACE_LANDMARKS[:1], 5, axis=0)
    assert yaw_proxy(collapsed) == float("inf")


def test_sharpness_separates_detail_from_a_flat_crop() -> None:
    assert sharpness(flat_crop()) == 0.0
    assert sharpness(sharp_crop()) > 1000.0


# --- decisions --------------------------------------------------------------------------------


def test_a_good_face_passes() -> None:
    assert check_quality(face(), GATE) is None


@pytest.mark.parametrize(
    ("candidate", "reason", "value"),
    [
        (face(side=20.0), "too_small", 20.0),
        (face(crop=flat_crop()), "blurred", 0.0),
        (face(landmarks=turned(ARCFACE_LANDMARKS, 1.5)), "extreme_pose", 1.5),
        (face(det_score=0.55), "low_confidence", 0.55),
    ],
)
def test_each_failure_has_its_reason_and_the_measured_value(
    candidate: DetectedFace, reason: str, value: float
) -> None:
    rejection = check_quality(candidate, GATE)
    assert rejection is not None
    assert rejection.reason == reason
    assert rejection.value == pytest.approx(value, abs=0.02)


def test_a_face_failing_several_tests_gets_the_first_reason() -> None:
    """Size first: a tiny face is also blurred once blown up to 112 px, and size says why."""
    rejection = check_quality(face(side=10.0, crop=flat_crop(), det_score=0.51), GATE)
    assert rejection == Rejection("too_small", 10.0, 32.0)


def test_the_limits_themselves_pass() -> None:
    assert check_quality(face(side=32.0, det_score=0.6), GATE) is None


def test_the_default_gate_keeps_a_small_turned_face_of_the_demo() -> None:
    """Defaults are below the demo photos' weakest faces (13 px, turned 0.69, score 0.516)."""
    demo_like = face(side=13.1, det_score=0.516, landmarks=turned(ARCFACE_LANDMARKS, 0.69))
    assert check_quality(demo_like, QualityGate()) is None


def test_rejection_describes_itself() -> None:
    assert Rejection("blurred", 2.594, 3.0).describe() == "blurred (2.59 below 3)"
    assert Rejection("extreme_pose", 1.2, 1.0).describe() == "extreme_pose (1.2 above 1)"


def test_apply_gate_keeps_passing_faces_with_their_indexes() -> None:
    faces = [face(index=0), face(side=20.0, index=1), face(index=2)]
    kept, unindexed = apply_gate(AnalyzedImage("ab" * 32, 640, 480, faces), GATE)
    assert [f.index for f in kept.faces] == [0, 2]
    assert [(u.index, u.rejection.reason) for u in unindexed] == [(1, "too_small")]
    assert unindexed[0].box == faces[1].box


# --- settings ---------------------------------------------------------------------------------


def test_gate_settings_from_the_environment() -> None:
    env = {
        "FACESEARCH_MIN_FACE_PX": "40",
        "FACESEARCH_MIN_SHARPNESS": "25.5",
        "FACESEARCH_MAX_YAW": "0.8",
        "FACESEARCH_MIN_DET_SCORE": "0.7",
    }
    assert CoreSettings.from_env(env).quality == QualityGate(40.0, 25.5, 0.8, 0.7)
    assert CoreSettings.from_env({}).quality == QualityGate()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FACESEARCH_MIN_FACE_PX", "big"),
        ("FACESEARCH_MAX_YAW", "-1"),
        ("FACESEARCH_MIN_DET_SCORE", "1.5"),
    ],
)
def test_a_bad_gate_setting_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        CoreSettings.from_env({name: value})


# --- the summary ------------------------------------------------------------------------------


def test_the_summary_lists_unindexed_faces_like_rekognition() -> None:
    small = UnindexedFace(3, (1.0, 2.0, 11.04, 12.0), Rejection("too_small", 10.04, 12.0))
    summary = Summary()
    summary.add(Outcome("a.jpg", "indexed", "ab" * 32, 2, unindexed=(small,)))
    summary.add(Outcome("b.jpg", "indexed", "cd" * 32, 1))

    data = output.summary_json(summary)

    assert "unindexed" not in data
    assert data["unindexed_faces"] == [
        {
            "path": "a.jpg",
            "face_index": 3,
            "box": [1.0, 2.0, 11.0, 12.0],
            "reason": "too_small",
            "value": 10.04,
            "limit": 12.0,
        }
    ]
    assert data["faces_indexed"] == 3


def test_the_text_summary_counts_unindexed_faces_by_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    blurred = UnindexedFace(0, (0.0, 0.0, 50.0, 50.0), Rejection("blurred", 2.5, 3.0))
    small = UnindexedFace(1, (0.0, 0.0, 9.0, 9.0), Rejection("too_small", 9.0, 12.0))
    summary = Summary()
    summary.add(Outcome("a.jpg", "indexed", "ab" * 32, 0, unindexed=(blurred, small, blurred)))

    output.print_summary(summary)

    out = capsys.readouterr().out
    assert "faces not indexed by the quality gate: 2 blurred, 1 too_small" in out
