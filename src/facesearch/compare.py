"""The known-folder / unknown-folder workflow of face_recognition's command line, on our models:
for each face of each unknown image, the known people within tolerance."""

from dataclasses import dataclass

import numpy as np

from facesearch.calibration import similarity_to_distance


@dataclass(frozen=True)
class KnownFace:
    name: str
    vector: np.ndarray


def known_within(
    known: list[KnownFace], vector: np.ndarray, tolerance: float
) -> list[tuple[str, float]]:
    """(name, distance) of every known face at most ``tolerance`` away, in the known order."""
    found = []
    for face in known:
        distance = similarity_to_distance(float(np.dot(face.vector, vector)))
        if distance <= tolerance:
            found.append((face.name, distance))
    return found


def result_lines(
    path: str, per_face: list[list[tuple[str, float]]], show_distance: bool
) -> list[str]:
    """face_recognition's output lines for one unknown image."""
    if not per_face:
        return [f"{path},no_persons_found"]
    lines = []
    for matches in per_face:
        if not matches:
            lines.append(f"{path},unknown_person")
        for name, distance in matches:
            lines.append(f"{path},{name},{distance:.4f}" if show_distance else f"{path},{name}")
    return lines
