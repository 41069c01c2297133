"""Pure face-pipeline steps: detector input size, alignment, choosing the central face."""

import warnings

import numpy as np
import pytest
from insightface.utils import face_align

from facesearch.detection import detector_input_size
from facesearch.faces import (
    ALIGNED_SIZE,
    ARCFACE_LANDMARKS,
    DetectedFace,
    align_face,
    central_face,
    face_quality,
    similarity_transform,
)

# --- detector_input_size ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "max_side", "expected"),
    [
        (480, 640, 640, (640, 480)),  # already a multiple of 32: unchanged
        (3000, 4000, 640, (640, 480)),  # scaled down, aspect kept
        (4000, 3000, 640, (480, 640)),  # portrait: (width, height) order
        (1000, 2000, 640, (640, 320)),
        (250, 300, 640, (320, 256)),  # small: rounded up to the stride, not blown up to 640
        (100, 100, 640, (128, 128)),  # tiny: at least 128
        (50, 1000, 640, (640, 128)),  # a thin strip keeps the 128 minimum
        (1080, 1920, 1280, (1280, 736)),  # 720 rounded up to the stride
    ],
)
def test_detector_input_size_examples(
    height: int, width: int, max_side: int, expected: tuple[int, int]
) -> None:
    assert detector_input_size(height, width, max_side) == expected


@pytest.mark.parametrize("max_side", [320, 640, 960])
def test_detector_input_size_properties(max_side: int) -> None:
    rng = np.random.default_rng(max_side)
    for height, width in rng.integers(1, 5000, size=(300, 2)):
        w, h = detector_input_size(int(height), int(width), max_side)
        assert w % 32 == 0
        assert h % 32 == 0
        assert min(w, h) >= 128
        assert max(w, h) <= max_side
        # Never smaller than the (scaled) image, and at most one stride more unless the
        # 128 minimum applies.
        scale = min(1.0, max_side / max(height, width))
        for side, source in ((w, width), (h, height)):
            assert side >= min(source * scale, max_side) - 1e-6
            if side > 128:
                assert side - source * scale < 32


@pytest.mark.parametrize(("height", "width"), [(533, 1066), (1135, 2270), (2493, 4986)])
def test_detector_input_size_of_exact_two_to_one_images(height: int, width: int) -> None:
    """Scaled to 640 wide, a 2:1 image is exactly 320 high: already on the stride, so it must not
    be rounded up a further 32 rows because of floating-point error in the scale."""
    assert detector_input_size(height, width, 640) == (640, 320)


# --- alignment --------------------------------------------------------------------------------


def insightface_matrix(landmarks: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(face_align.estimate_norm(landmarks, ALIGNED_SIZE))


def test_similarity_transform_matches_insightface_on_face_like_landmarks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        angle = rng.uniform(-np.pi, np.pi)
        scale = rng.uniform(0.3, 5.0)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shift = rng.uniform(-500, 500, size=2)
        landmarks = scale * ARCFACE_LANDMARKS @ rotation.T + shift + rng.normal(0, 2, (5, 2))
        ours = similarity_transform(landmarks, ARCFACE_LANDMARKS)
        np.testing.assert_allclose(ours, insightface_matrix(landmarks), atol=1e-4)


def test_similarity_transform_matches_insightface_on_random_landmarks() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        landmarks = rng.uniform(0, 1000, size=(5, 2))  # includes mirrored arrangements
        ours = similarity_transform(landmarks, ARCFACE_LANDMARKS)
        np.testing.assert_allclose(ours, insightface_matrix(landmarks), atol=1e-4)


def test_similarity_transform_recovers_an_exact_similarity() -> None:
    angle, scale, shift = 0.3, 2.5, np.array([10.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_LANDMARKS
    dst = scale * src @ rotation.T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_align_face_of_translated_landmarks_is_the_crop_at_that_offset() -> None:
    rng = np.random.default_rng(2)
    bgr = rng.integers(0, 256, size=(200, 240, 3), dtype=np.uint8)
    offset = np.array([40.0, 30.0])  # x, y
    crop = align_face(bgr, ARCFACE_LANDMARKS + offset)
    assert crop.shape == (ALIGNED_SIZE, ALIGNED_SIZE, 3)
    assert crop.dtype == np.uint8
    expected = bgr[30 : 30 + ALIGNED_SIZE, 40 : 40 + ALIGNED_SIZE]
    assert np.abs(crop.astype(int) - expected.astype(int)).max() <= 1


def test_align_face_of_a_scaled_face_has_the_crop_shape() -> None:
    bgr = np.full((400, 300, 3), 200, dtype=np.uint8)
    landmarks = ARCFACE_LANDMARKS * 2.0 + np.array([20.0, 60.0])
    crop = align_face(bgr, landmarks.astype(np.float32))
    assert crop.shape == (ALIGNED_SIZE, ALIGNED_SIZE, 3)
    assert crop.dtype == np.uint8
    assert (crop == 200).all()  # the whole crop lies inside the image


def test_face_quality_damps_small_and_blurred_faces() -> None:
    rng = np.random.default_rng(3)
    sharp = rng.integers(0, 256, size=(ALIGNED_SIZE, ALIGNED_SIZE, 3), dtype=np.uint8)
    flat = np.full((ALIGNED_SIZE, ALIGNED_SIZE, 3), 128, dtype=np.uint8)
    big_box = (0.0, 0.0, 100.0, 120.0)
    assert face_quality(sharp, big_box, 0.9) == pytest.approx(0.9)
    assert face_quality(sharp, (10.0, 10.0, 42.0, 90.0), 0.9) == pytest.approx(0.45)
    assert face_quality(flat, big_box, 0.9) == 0.0


# --- central_face -----------------------------------------------------------------------------


def face(index: int, box: tuple[float, float, float, float], score: float = 0.9) -> DetectedFace:
    crop = np.zeros((ALIGNED_SIZE, ALIGNED_SIZE, 3), dtype=np.uint8)
    return DetectedFace(index, box, score, np.zeros((5, 2)), crop, score)


def test_central_face_picks_the_face_nearest_the_centre() -> None:
    # A 100 high, 400 wide image: its centre is x=200, y=50.
    big_off_centre = face(0, (0.0, 0.0, 100.0, 100.0), score=0.99)
    central = face(1, (190.0, 40.0, 210.0, 60.0), score=0.6)
    other = face(2, (300.0, 10.0, 340.0, 50.0), score=0.8)
    assert central_face([big_off_centre, central, other], 100, 400) is central


def test_central_face_does_not_swap_height_and_width() -> None:
    # Image 100 high, 400 wide: centre (x=200, y=50). Were height and width swapped, the
    # centre would be (x=50, y=200) and the second face would win.
    at_centre = face(0, (180.0, 30.0, 220.0, 70.0))
    near_swapped_centre = face(1, (40.0, 60.0, 80.0, 100.0))
    assert central_face([near_swapped_centre, at_centre], 100, 400) is at_centre


def test_central_face_of_no_faces_is_none() -> None:
    assert central_face([], 100, 100) is None
