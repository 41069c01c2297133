"""Answers per person: the labelled people each query face resembles, with how often and where
they appear, each person given to at most one face of a query image.

Matches without a label are left out of the people (a face with no label is nobody in
particular) and only counted, so a caller can say how many there were."""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from facesearch.indexing import InputFile
from facesearch.records import Match
from facesearch.searching import QueryFace


@dataclass(frozen=True)
class Person:
    """One label among a query face's matches."""

    label: str
    score: float  # the best match's score
    appearances: int  # matching faces with this label
    best: Match  # where the person appears most alike: image, box, source


@dataclass(frozen=True)
class FacePeople:
    """A query face and the people it was given. ``identified``: ``people[0]`` is the person
    the joint assignment gave this face; the rest are people no face of the image was given,
    listed under the face they resemble most."""

    face: QueryFace
    people: list[Person]
    identified: bool
    unlabelled: int  # matches without a label, left out of ``people``


def people_of(matches: Iterable[Match]) -> list[Person]:
    """Matches grouped by label, best score first; unlabelled matches are left out."""
    groups: dict[str, list[Match]] = {}
    for match in matches:
        if match.label:
            groups.setdefault(match.label, []).append(match)
    people = []
    for label, found in groups.items():
        best = max(found, key=lambda m: m.score)
        people.append(Person(label, best.score, len(found), best))
    return sorted(people, key=lambda p: (-p.score, p.label))


def assign_labels(scores: list[dict[str, float]]) -> dict[int, str]:
    """Face position -> label, each label to at most one face and each face at most one label,
    maximising the summed score (Hungarian algorithm). Taking each face's best label alone can
    name one person twice; taking the best pair first can leave a face with a poor second
    choice when swapping would score higher overall. Pairs without a positive score are never
    made."""
    labels = sorted({label for row in scores for label in row})
    if not labels:
        return {}
    weights = np.zeros((len(scores), len(labels)))
    for row, found in enumerate(scores):
        for column, label in enumerate(labels):
            weights[row, column] = max(found.get(label, 0.0), 0.0)
    rows, columns = linear_sum_assignment(weights, maximize=True)
    return {int(r): labels[int(c)] for r, c in zip(rows, columns, strict=True) if weights[r, c] > 0}


def by_person(faces: list[QueryFace], threshold: float, everyone: bool = False) -> list[FacePeople]:
    """Every face of one query image with its people: the person assigned to it, among those
    scoring ``threshold`` or more (the gallery's ``match`` threshold); with ``everyone``, then
    the people no face was assigned, each under the face with its best score (ties: the earlier
    face). No person is listed twice for one image."""
    per_face = [people_of(face.matches) for face in faces]
    assigned = assign_labels(
        [{p.label: p.score for p in people if p.score >= threshold} for people in per_face]
    )
    taken = set(assigned.values())
    home: dict[str, int] = {}  # label no face was given -> the face it scores best on
    for position, people in enumerate(per_face):
        for person in people:
            if person.label in taken or not everyone:
                continue
            current = home.get(person.label)
            if current is None or person.score > _score(per_face[current], person.label):
                home[person.label] = position
    answers = []
    for position, (face, people) in enumerate(zip(faces, per_face, strict=True)):
        first = [p for p in people if p.label == assigned.get(position)]
        rest = [p for p in people if home.get(p.label) == position]
        unlabelled = sum(not m.label for m in face.matches)
        answers.append(FacePeople(face, first + rest, bool(first), unlabelled))
    return answers


def _score(people: list[Person], label: str) -> float:
    return next(p.score for p in people if p.label == label)


def label_by_name(inputs: Iterable[InputFile]) -> list[InputFile]:
    """Each input labelled with its file name without the extension: the convention of
    compare's known folder (``alice.jpg`` is alice)."""
    return [InputFile(item.path, item.path.stem) for item in inputs]
