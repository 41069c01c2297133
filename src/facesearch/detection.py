"""SCRFD around the model call: the input tensor made from an image (done ahead, off the
models' thread) and the raw outputs decoded into boxes, scores and 5 landmarks.

Small images are padded to the stride, not resized: a 250x250 photo is detected at 256x256 with
its own pixels, where insightface's helper would stretch it to fit.
"""

import functools
from dataclasses import dataclass

import cv2
import numpy as np

STRIDE = 32
MIN_SIDE = 128
_MEAN, _STD = 127.5, 128.0


@dataclass(frozen=True)
class DetectorInput:
    """A 1x3xHxW float32 tensor and the factor from source pixels to tensor pixels."""

    blob: np.ndarray
    scale: float


@dataclass(frozen=True)
class AnchorLayout:
    """How a SCRFD model lays out its outputs (read from the loaded model)."""

    strides: tuple[int, ...]
    anchors: int


def detector_input_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(width, height) of the tensor: the image's own size rounded up to the stride, the longer
    side brought down to ``max_side`` (itself rounded down to the stride), at least 128."""
    cap = max(STRIDE, max_side // STRIDE * STRIDE)
    longer = max(height, width)
    limit = min(longer, cap)
    # Integer arithmetic: a float scale can land a hair above a stride boundary.
    target_h = max(MIN_SIDE, _round_up(-(-height * limit // longer)))
    target_w = max(MIN_SIDE, _round_up(-(-width * limit // longer)))
    return min(target_w, max(cap, MIN_SIDE)), min(target_h, max(cap, MIN_SIDE))


def _round_up(value: int) -> int:
    return -(-value // STRIDE) * STRIDE


def prepare_input(bgr: np.ndarray, max_side: int) -> DetectorInput:
    """Scale the image down only if it is larger than the tensor, pad with black, normalise."""
    height, width = bgr.shape[:2]
    tensor_w, tensor_h = detector_input_size(height, width, max_side)
    scale = min(1.0, tensor_w / width, tensor_h / height)
    if scale < 1.0:
        # At least a pixel a side: a 1 x 5000 strip scaled to the tensor would round to 0
        # (cv2.resize then raised, and a fuzzed image like it stopped the detector service).
        size = (
            max(1, min(tensor_w, round(width * scale))),
            max(1, min(tensor_h, round(height * scale))),
        )
        bgr = cv2.resize(bgr, size)
    canvas = np.zeros((tensor_h, tensor_w, 3), dtype=np.uint8)
    canvas[: bgr.shape[0], : bgr.shape[1]] = bgr
    size = (tensor_w, tensor_h)
    blob = cv2.dnn.blobFromImage(canvas, 1.0 / _STD, size, (_MEAN, _MEAN, _MEAN), swapRB=True)
    return DetectorInput(np.ascontiguousarray(blob, dtype=np.float32), scale)


def decode(
    outputs: list[np.ndarray],
    layout: AnchorLayout,
    prepared: DetectorInput,
    threshold: float,
    nms_iou: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N x 5: x1, y1, x2, y2, score) and landmarks (N x 5 x 2) in source pixels, best
    first, overlapping duplicates removed. ``outputs`` are scores, boxes, then landmarks, one
    per stride, as SCRFD models with landmarks produce them."""
    levels = len(layout.strides)
    tensor_h, tensor_w = prepared.blob.shape[2:]
    boxes, landmarks = [], []
    for level, stride in enumerate(layout.strides):
        scores = outputs[level].reshape(-1)
        keep = np.nonzero(scores >= threshold)[0]
        if keep.size == 0:
            continue
        centres = _anchor_centres(tensor_h // stride, tensor_w // stride, stride, layout.anchors)
        centres = centres[keep]
        distances = outputs[levels + level].reshape(-1, 4)[keep] * stride
        points = outputs[2 * levels + level].reshape(-1, 5, 2)[keep] * stride
        corners = np.hstack([centres - distances[:, :2], centres + distances[:, 2:]])
        boxes.append(np.hstack([corners, scores[keep, None]]))
        landmarks.append(points + centres[:, None, :])
    if not boxes:
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    found, marks = np.vstack(boxes), np.vstack(landmarks)
    found[:, :4] /= prepared.scale
    marks /= prepared.scale
    order = np.argsort(-found[:, 4], kind="stable")
    kept = non_max_suppression(found[order], nms_iou)
    return found[order][kept].astype(np.float32), marks[order][kept].astype(np.float32)


@functools.lru_cache(maxsize=256)
def _anchor_centres(rows: int, cols: int, stride: int, anchors: int) -> np.ndarray:
    """(x, y) of every anchor, row by row, each repeated per anchor (cached: read-only)."""
    ys, xs = np.mgrid[:rows, :cols]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    centres = np.repeat(centres, anchors, axis=0)
    centres.flags.writeable = False
    return centres


def non_max_suppression(boxes: np.ndarray, iou: float) -> list[int]:
    """Indices of the boxes kept, given boxes sorted best first: each drops later ones that
    overlap it by more than ``iou``."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    order = np.arange(len(boxes))
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        overlap = w * h / np.maximum(areas[best] + areas[rest] - w * h, 1e-9)
        order = rest[overlap <= iou]
    return kept
