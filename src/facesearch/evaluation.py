"""``facesearch eval lfw`` and ``facesearch calibrate``: the whole pipeline on every image a pairs
file names, or on every image of a folder-per-person dataset, to scores of labelled pairs."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesearch import lfw
from facesearch.calibration import pair_scores
from facesearch.errors import ConfigError, FaceSearchError
from facesearch.faces import central_face, detect_faces
from facesearch.images import decode_image
from facesearch.indexing import collect_inputs
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


def try_embed(path: Path, models: FaceModels, settings: CoreSettings) -> np.ndarray | None:
    """``embed_central_face``, with None also for a file that is missing or not an image."""
    try:
        return embed_central_face(path, models, settings)
    except (OSError, FaceSearchError):
        return None


def embed_pair_images(
    root: Path,
    pairs: list[lfw.Pair],
    models: FaceModels,
    settings: CoreSettings,
    on_image: Callable[[], None],
) -> tuple[dict[str, np.ndarray | None], float]:
    """The central face's embedding of every image the pairs name (None where there is no
    usable face), and the seconds it took."""
    start = time.perf_counter()
    vectors: dict[str, np.ndarray | None] = {}
    for name in sorted({p.left for p in pairs} | {p.right for p in pairs}):
        vectors[name] = try_embed(root / name, models, settings)
        on_image()
    return vectors, time.perf_counter() - start


def evaluate_lfw(
    root: Path,
    pairs_file: Path,
    models: FaceModels,
    settings: CoreSettings,
    on_image: Callable[[], None] = lambda: None,
) -> LfwReport:
    pairs = lfw.read_pairs(pairs_file)
    vectors, seconds = embed_pair_images(root, pairs, models, settings, on_image)
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
        images=len(vectors),
        pairs=len(pairs),
        seconds=seconds,
    )


def _score(left: np.ndarray | None, right: np.ndarray | None) -> float:
    return -1.0 if left is None or right is None else float(np.dot(left, right))


@dataclass(frozen=True)
class LabelledScores:
    """Scores of same-person (genuine) and different-person (impostor) pairs, and the images
    they came from; images without a face (or unreadable) take part in no pair."""

    genuine: np.ndarray
    impostor: np.ndarray
    images: int
    people: int
    no_face: list[str]
    seconds: float


@dataclass(frozen=True)
class Embedded:
    """Central-face embeddings of labelled images: a row per image with a face."""

    vectors: np.ndarray
    labels: list[str]
    paths: list[str]  # relative to the dataset's folder
    no_face: list[str]
    seconds: float


def person_images(root: Path) -> list[tuple[str, Path]]:
    """(person, image) for every image under each sub-folder of ``root``, the sub-folder's
    name being the person; files directly in ``root`` are not anyone's."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    found: list[tuple[str, Path]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        inputs, _ = collect_inputs([folder], folder.name, False)
        found.extend((item.label, item.path) for item in inputs)
    if not found:
        raise ConfigError(f"no images in sub-folders of {root}: it needs one folder per person")
    return found


def embed_people(
    root: Path,
    models: FaceModels,
    settings: CoreSettings,
    on_image: Callable[[], None] = lambda: None,
) -> Embedded:
    """Embed the central face of every image of a folder-per-person dataset, once each."""
    start = time.perf_counter()
    rows, labels, paths, no_face = [], [], [], []
    for person, path in person_images(root):
        vector = try_embed(path, models, settings)
        relative = str(path.relative_to(root))
        if vector is None:
            no_face.append(relative)
        else:
            rows.append(vector)
            labels.append(person)
            paths.append(relative)
        on_image()
    vectors = np.stack(rows) if rows else np.zeros((0, models.dim), np.float32)
    return Embedded(vectors, labels, paths, no_face, time.perf_counter() - start)


def folder_scores(
    root: Path,
    models: FaceModels,
    settings: CoreSettings,
    on_image: Callable[[], None] = lambda: None,
) -> LabelledScores:
    """Every same-person and every different-person pair among the images of ``root``."""
    embedded = embed_people(root, models, settings, on_image)
    genuine, impostor = pair_scores(embedded.vectors, embedded.labels)
    return LabelledScores(
        genuine,
        impostor,
        images=len(embedded.paths) + len(embedded.no_face),
        people=len(set(embedded.labels)),
        no_face=embedded.no_face,
        seconds=embedded.seconds,
    )


def pairs_file_scores(
    root: Path,
    pairs_file: Path,
    models: FaceModels,
    settings: CoreSettings,
    on_image: Callable[[], None] = lambda: None,
) -> LabelledScores:
    """The pairs a pairs file lists, as genuine or impostor by its own labels."""
    pairs = lfw.read_pairs(pairs_file)
    vectors, seconds = embed_pair_images(root, pairs, models, settings, on_image)
    names = sorted(vectors)
    scored = [
        (p.same, float(np.dot(left, right)))
        for p in pairs
        if (left := vectors[p.left]) is not None and (right := vectors[p.right]) is not None
    ]
    return LabelledScores(
        genuine=np.array([s for same, s in scored if same], np.float32),
        impostor=np.array([s for same, s in scored if not same], np.float32),
        images=len(names),
        people=len({name.split("/")[0] for name in names}),
        no_face=[n for n, v in vectors.items() if v is None],
        seconds=seconds,
    )
