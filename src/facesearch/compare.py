"""The known-folder / unknown-folder workflow of face_recognition's command line, on our models:
for each face of each unknown image, the known people within tolerance."""

from facesearch.calibration import similarity_to_distance


def known_within(
    names: list[str], similarities: list[float], tolerance: float
) -> list[tuple[str, float]]:
    """(name, distance) of every known face at most ``tolerance`` away from one face, given its
    similarity to each known face, in the known order."""
    distances = (similarity_to_distance(s) for s in similarities)
    return [(name, d) for name, d in zip(names, distances, strict=True) if d <= tolerance]


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
