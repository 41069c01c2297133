"""The known-folder / unknown-folder workflow of face_recognition's command line, on our models:
for each face of each unknown image, the known person it is (or, on request, every known
person within tolerance)."""

from collections.abc import Sequence

from facesearch.calibration import similarity_to_distance
from facesearch.identities import assign_labels
from facesearch.records import Box


def largest(boxes: Sequence[Box]) -> int:
    """The position of the largest face: a known photo's person (its subject), where the
    detector's order would pick whoever it is surest of. On lfw-devtest, where 70 of the 361
    known photos hold other faces too, the largest rather than the first cut the mated images
    compare missed from 28 to 9."""
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes]
    return max(range(len(areas)), key=areas.__getitem__)


def known_within(
    names: list[str], similarities: list[float], tolerance: float
) -> list[tuple[str, float]]:
    """(name, distance) of every known face at most ``tolerance`` away from one face, given its
    similarity to each known face, in the known order."""
    distances = (similarity_to_distance(s) for s in similarities)
    return [(name, d) for name, d in zip(names, distances, strict=True) if d <= tolerance]


def names_of(
    names: list[str], rows: list[list[float]], tolerance: float, everyone: bool
) -> list[list[tuple[str, float]]]:
    """Per face of one image, (name, distance) of the known people it is given: each face at
    most one within tolerance and each name at most one face, paired jointly (the Hungarian
    algorithm, as ``search --by-person``); with ``everyone``, every known face within tolerance.
    ``rows``: per face, its similarity to each known face."""
    within = [known_within(names, row, tolerance) for row in rows]
    if everyone:
        return within
    scores: list[dict[str, float]] = [{} for _ in rows]
    for face, found in enumerate(within):
        for name, distance in found:  # a name twice (a.jpg, a.png): its best photo
            scores[face][name] = max(scores[face].get(name, -1.0), 1.0 - distance)
    assigned = assign_labels(scores)
    return [
        [(assigned[face], 1.0 - scores[face][assigned[face]])] if face in assigned else []
        for face in range(len(rows))
    ]


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
