"""Pure steps of the face pipeline: detect, align, score quality, embed. The CLI and the
detector/embedder services call these same functions."""

from dataclasses import dataclass

import cv2
import numpy as np

from facesearch.detection import DetectorInput, prepare_input
from facesearch.models import FaceModels
from facesearch.records import Rejection
from facesearch.settings import QualityGate

ALIGNED_SIZE = 112
# ArcFace's canonical landmark positions in a 112x112 crop (eyes, nose tip, mouth corners).
ARCFACE_LANDMARKS = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class DetectedFace:
    """One face found in an image: where it is, how sure, and its aligned crop."""

    index: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels
    det_score: float
    landmarks: np.ndarray  # 5 x 2, source pixels
    crop: np.ndarray  # 112 x 112 x 3 BGR, aligned
    quality: float


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity (rotation, uniform scale, shift; no
    reflection) mapping ``src`` points onto ``dst``: the transform insightface's ``norm_crop``
    estimates with Umeyama's method, in its closed 2-D form (points as complex numbers)."""
    src_c = src[:, 0] + 1j * src[:, 1]
    dst_c = dst[:, 0] + 1j * dst[:, 1]
    src_mean, dst_mean = src_c.mean(), dst_c.mean()
    centred = src_c - src_mean
    rotation_scale = np.vdot(centred, dst_c - dst_mean) / np.vdot(centred, centred).real
    shift = dst_mean - rotation_scale * src_mean
    a, b = rotation_scale.real, rotation_scale.imag
    return np.array([[a, -b, shift.real], [b, a, shift.imag]])


def align_face(bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112x112 crop ArcFace expects, eyes and mouth at their canonical places."""
    matrix = similarity_transform(landmarks.astype(np.float64), ARCFACE_LANDMARKS)
    return cv2.warpAffine(bgr, matrix, (ALIGNED_SIZE, ALIGNED_SIZE), borderValue=0.0)


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the aligned crop: low when blurred (or blown up from a few
    pixels, which is the same loss of detail)."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def min_side(box: tuple[float, float, float, float]) -> float:
    return min(box[2] - box[0], box[3] - box[1])


def face_quality(
    crop: np.ndarray, box: tuple[float, float, float, float], det_score: float
) -> float:
    """A 0..1 heuristic: detector confidence, damped for small faces (under 64 px) and for blur
    (variance of the Laplacian of the aligned crop under 100)."""
    return float(det_score * min(1.0, min_side(box) / 64.0) * min(1.0, sharpness(crop) / 100.0))


def yaw_proxy(landmarks: np.ndarray) -> float:
    """How far the head is turned, from the 5 landmarks: the nose tip's distance from the
    face's midline (eyes' midpoint to mouth corners' midpoint), over the distance between the
    eyes. Roll and pitch leave it unchanged; a frontal face gives about 0 and, with the nose
    standing out about half the eye distance, a yaw of A gives about 0.5 * tan(A) (45 deg: 0.5,
    63 deg: 1.0), growing without bound towards a profile, where the eyes close up."""
    left_eye, right_eye, nose, left_mouth, right_mouth = landmarks.astype(np.float64)
    eyes_mid = (left_eye + right_eye) / 2
    midline = (left_mouth + right_mouth) / 2 - eyes_mid
    eye_distance = float(np.linalg.norm(right_eye - left_eye))
    length = float(np.linalg.norm(midline))
    if eye_distance < 1e-6 or length < 1e-6:
        return float("inf")  # landmarks collapsed onto each other: no frontal face there
    offset = nose - eyes_mid
    return abs(float(offset[0] * midline[1] - offset[1] * midline[0])) / length / eye_distance


def check_quality(face: DetectedFace, gate: QualityGate) -> Rejection | None:
    """The first test of the gate the face fails (in the order of ``Rejection.reason``), or
    None when it may be indexed."""
    side = min_side(face.box)
    if side < gate.min_face_px:
        return Rejection("too_small", side, gate.min_face_px)
    sharp = sharpness(face.crop)
    if sharp < gate.min_sharpness:
        return Rejection("blurred", sharp, gate.min_sharpness)
    yaw = yaw_proxy(face.landmarks)
    if yaw > gate.max_yaw:
        return Rejection("extreme_pose", yaw, gate.max_yaw)
    if face.det_score < gate.min_det_score:
        return Rejection("low_confidence", face.det_score, gate.min_det_score)
    return None


def detect_faces(
    models: FaceModels, bgr: np.ndarray, max_faces: int, prepared: DetectorInput | None = None
) -> list[DetectedFace]:
    """Every face in the image, best detector score first, at most ``max_faces``. ``prepared``
    is the detector input made from ``bgr`` beforehand, if it was."""
    height, width = bgr.shape[:2]
    if prepared is None:
        prepared = prepare_input(bgr, models.settings.det_max_side)
    boxes, landmarks = models.detect(prepared)
    faces = []
    for index, (row, points) in enumerate(
        zip(boxes[:max_faces], landmarks[:max_faces], strict=True)
    ):
        box = _clip_box(row[:4], width, height)
        crop = align_face(bgr, points)
        score = float(row[4])
        faces.append(DetectedFace(index, box, score, points, crop, face_quality(crop, box, score)))
    return faces


def _clip_box(row: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in row)
    return (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))


def central_face(faces: list[DetectedFace], height: int, width: int) -> DetectedFace | None:
    """The face whose box centre is nearest the image centre (the subject of a portrait)."""
    if not faces:
        return None
    cy, cx = height / 2.0, width / 2.0

    def distance(face: DetectedFace) -> float:
        x1, y1, x2, y2 = face.box
        return ((x1 + x2) / 2 - cx) ** 2 + ((y1 + y2) / 2 - cy) ** 2

    return min(faces, key=distance)


def embed_faces(models: FaceModels, faces: list[DetectedFace]) -> np.ndarray:
    """L2-normalised embeddings, one row per face, in the order given."""
    return models.embed([face.crop for face in faces])
