"""SCRFD input preparation and output decoding, on synthetic tensors (no model)."""

import numpy as np
import pytest

from facesearch.detection import (
    AnchorLayout,
    DetectorInput,
    decode,
    non_max_suppression,
    prepare_input,
)

PAD = (0 - 127.5) / 128.0


def test_a_small_image_is_padded_with_its_own_pixels_not_resized() -> None:
    image = np.full((250, 200, 3), 255, dtype=np.uint8)
    image[0, 0] = (0, 0, 255)  # BGR red

    prepared = prepare_input(image, 640)

    assert prepared.scale == 1.0
    assert prepared.blob.shape == (1, 3, 256, 224)
    assert prepared.blob.dtype == np.float32
    red, green, blue = prepared.blob[0, :, 0, 0]
    assert (red, green, blue) == pytest.approx(((255 - 127.5) / 128, PAD, PAD))
    assert np.all(prepared.blob[0, :, 1:250, 1:200] == pytest.approx((255 - 127.5) / 128))
    assert np.all(prepared.blob[0, :, 250:, :] == pytest.approx(PAD))
    assert np.all(prepared.blob[0, :, :, 200:] == pytest.approx(PAD))


def test_a_large_image_is_scaled_down_to_fit() -> None:
    prepared = prepare_input(np.zeros((800, 1237, 3), dtype=np.uint8), 640)

    assert prepared.blob.shape == (1, 3, 416, 640)
    assert prepared.scale == pytest.approx(640 / 1237)


@pytest.mark.parametrize("shape", [(1, 5000, 3), (5000, 1, 3), (2, 40_000, 3)])
def test_a_strip_too_thin_to_scale_is_kept_a_pixel_wide(shape: tuple[int, int, int]) -> None:
    # Found by test_fuzz_gateway: the strip's short side rounded to 0 and cv2.resize raised,
    # which stopped the detector service.
    prepared = prepare_input(np.full(shape, 255, dtype=np.uint8), 640)

    assert prepared.scale < 1.0
    assert max(prepared.blob.shape[2:]) == 640
    assert np.any(prepared.blob[0, 0] > 0)  # the strip is there, a pixel wide


def test_non_max_suppression_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10, 0.9],
            [1, 1, 11, 11, 0.8],  # IoU with the first 81/119 = 0.68: dropped
            [20, 20, 30, 30, 0.7],  # apart: kept
            [0, 0, 10, 5, 0.6],  # IoU 0.5 with the first: dropped at 0.4
        ],
        dtype=np.float32,
    )
    assert non_max_suppression(boxes, 0.4) == [0, 2]
    assert non_max_suppression(boxes, 0.6) == [0, 2, 3]


def _outputs(tensor: int, strides: tuple[int, ...], anchors: int) -> list[np.ndarray]:
    cells = [(tensor // s) ** 2 * anchors for s in strides]
    scores = [np.zeros((n, 1), np.float32) for n in cells]
    boxes = [np.zeros((n, 4), np.float32) for n in cells]
    points = [np.zeros((n, 10), np.float32) for n in cells]
    return [*scores, *boxes, *points]


def test_decode_places_a_box_and_landmarks_around_their_anchor() -> None:
    layout = AnchorLayout((8, 16, 32), 2)
    outputs = _outputs(128, layout.strides, layout.anchors)
    # Stride 16, grid 8x8, two anchors per cell: row 2, column 3, second anchor.
    index = (2 * 8 + 3) * 2 + 1
    outputs[1][index] = 0.9
    outputs[4][index] = (1, 2, 3, 4)  # left, top, right, bottom, in strides
    outputs[7][index] = (0, 0, 1, 0, 0, 1, -1, 0, 0, -1)
    prepared = DetectorInput(np.zeros((1, 3, 128, 128), np.float32), 0.5)

    boxes, landmarks = decode(outputs, layout, prepared, 0.5, 0.4)

    centre = np.array([3 * 16, 2 * 16])  # x, y of the anchor
    expected_box = np.array([centre[0] - 16, centre[1] - 32, centre[0] + 48, centre[1] + 64]) / 0.5
    assert boxes.shape == (1, 5)
    assert boxes[0, :4] == pytest.approx(expected_box)
    assert boxes[0, 4] == pytest.approx(0.9)
    offsets = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]]) * 16
    assert landmarks[0] == pytest.approx((centre + offsets) / 0.5)


def test_decode_drops_scores_under_the_threshold_and_sorts_best_first() -> None:
    layout = AnchorLayout((8, 16, 32), 2)
    outputs = _outputs(128, layout.strides, layout.anchors)
    outputs[0][10] = 0.6  # stride 8
    outputs[2][3] = 0.95  # stride 32
    outputs[0][200] = 0.49  # under the threshold
    for level in range(3):
        outputs[3 + level][:] = 1.0  # one-stride boxes: far apart, no suppression
    prepared = DetectorInput(np.zeros((1, 3, 128, 128), np.float32), 1.0)

    boxes, landmarks = decode(outputs, layout, prepared, 0.5, 0.4)

    assert boxes[:, 4] == pytest.approx([0.95, 0.6])
    assert landmarks.shape == (2, 5, 2)


def test_decode_without_any_face() -> None:
    layout = AnchorLayout((8, 16, 32), 2)
    prepared = DetectorInput(np.zeros((1, 3, 128, 128), np.float32), 1.0)

    boxes, landmarks = decode(_outputs(128, layout.strides, 2), layout, prepared, 0.5, 0.4)

    assert boxes.shape == (0, 5)
    assert landmarks.shape == (0, 5, 2)
