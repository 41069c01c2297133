"""``facesearch eval lfw``: the whole pipeline on every image a pairs file names."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesearch import lfw
from facesearch.errors import FaceSearchError
from facesearch.faces import central_face, detect_faces
from facesearch.images import decode_image
from facesearch.models import FaceModels
from facesearch.settings import CoreSettings

FAR = 1e-2


@dataclass(frozen=True)
class LfwReport:
    accuracy: float
    accuracy_std: float
    tar_at_far: float
    far_threshold: float
    threshold: float
    detect_failures: list[str]
    images: int
    pairs: int
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "tar_at_far_1e-2": self.tar_at_far,
            "far_1e-2_threshold": self.far_threshold,
            "threshold": self.threshold,
            "detect_failures": len(self.detect_failures),
            "detect_failure_images": self.detect_failures,
            "images": self.images,
            "pairs": self.pairs,
            "seconds": self.seconds,
        }


def embed_central_face(path: Path, models: FaceModels, settings: CoreSettings) -> np.ndarray | None:
    """Decode, detect, take the face nearest the centre, align and embed; None without a face."""
    bgr = decode_image(path.read_bytes(), settings.limits)
    face = central_face(detect_faces(models, bgr, settings.max_faces_per_image), *bgr.shape[:2])
    return None if face is None else models.embed([face.crop])[0]


def evaluate_lfw(
    root: Path,
    pairs_file: Path,
    models: FaceModels,
    settings: CoreSettings,
    on_image: Callable[[], None] = lambda: None,
) -> LfwReport:
    pairs = lfw.read_pairs(pairs_file)
    names = sorted({p.left for p in pairs} | {p.right for p in pairs})
    start = time.perf_counter()
    vectors: dict[str, np.ndarray | None] = {}
    for name in names:
        try:
            vectors[name] = embed_central_face(root / name, models, settings)
        except (OSError, FaceSearchError):
            vectors[name] = None
        on_image()
    seconds = time.perf_counter() - start
    # A pair with an image we could not read or find a face in scores -1: a miss if same person.
    scores = np.array([_score(vectors[p.left], vectors[p.right]) for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    mean, std = lfw.kfold_accuracy(scores, same, folds)
    tar, far_threshold = lfw.tar_at_far(scores, same, FAR)
    return LfwReport(
        accuracy=mean,
        accuracy_std=std,
        tar_at_far=tar,
        far_threshold=far_threshold,
        threshold=lfw.best_threshold(scores, same),
        detect_failures=[n for n, v in vectors.items() if v is None],
        images=len(names),
        pairs=len(pairs),
        seconds=seconds,
    )


def _score(left: np.ndarray | None, right: np.ndarray | None) -> float:
    return -1.0 if left is None or right is None else float(np.dot(left, right))
