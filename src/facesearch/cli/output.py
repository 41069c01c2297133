"""How results look on a terminal and as JSON; the CLI's only formatting code."""

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from facesearch.calibration import Decisions
from facesearch.identities import FacePeople, Person
from facesearch.indexing import Summary
from facesearch.optout import OPTED_OUT
from facesearch.records import Box, Erasure, Match, Rejection, StoreStats
from facesearch.searching import Found, QueryFace
from facesearch.video import format_ms

_VIDEO_FIELDS = ("video_id", "track_id", "t_start_ms", "t_end_ms", "best_ms")


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


def box_text(box: Box) -> str:
    x1, y1, x2, y2 = (round(v) for v in box)
    return f"x {x1}-{x2}, y {y1}-{y2}"


def match_json(match: Match) -> dict[str, Any]:
    data = asdict(match)
    data["box"] = [round(v, 1) for v in match.box]
    data["score"] = round(match.score, 4)
    if not match.video_id:  # a still image's JSON stays as it was
        for key in _VIDEO_FIELDS:
            data.pop(key)
    return data


def query_face_json(face: QueryFace) -> dict[str, Any]:
    return {
        "index": face.index,
        "box": [round(v, 1) for v in face.box],
        "det_score": round(face.det_score, 4),
        "quality": round(face.quality, 4),
        "matches": [match_json(m) for m in face.matches],
    }


def where(match: Match) -> str:
    return match.source_uri or match.path or match.image_id


def when(match: Match) -> str:
    """For a face of a video: its track's times and the time of the stored frame."""
    if not match.video_id:
        return ""
    span = f"{format_ms(match.t_start_ms)}-{format_ms(match.t_end_ms)}"
    return f" @ {span} (best {format_ms(match.best_ms, 2)})"  # show-frame's exact frame


def print_matches(matches: list[Match], indent: str = "  ", names_only: bool = False) -> None:
    if not matches:
        click.echo(f"{indent}no match at or above the threshold")
        return
    click.echo(f"{indent}{'score':>6}  {'decision':<8}  {'label':<16} {'box':<24} where")
    for m in matches:
        label = m.label or "-"
        place = (Path(where(m)).name if names_only else where(m)) + when(m)
        click.echo(
            f"{indent}{m.score:6.3f}  {m.decision:<8}  {label:<16} {box_text(m.box):<24} {place}"
        )


def decisions_text(decisions: Decisions) -> str:
    """What the decisions stand for, in one line."""
    faces = decisions.gallery_faces
    return (
        f"gallery of {faces:,} face{'s' if faces != 1 else ''}: match from "
        f"{decisions.match_threshold:.3f} (FPIR {percent(decisions.match_fpir)}), possible from "
        f"{decisions.possible_threshold:.3f} (FPIR {percent(decisions.possible_fpir)})"
    )


def percent(rate: float) -> str:
    """A small rate as a percentage with two significant digits (0.0031%, 1.0%)."""
    return f"{float(f'{rate * 100:.2g}'):g}%"


def search_header(query: str, found: Found, suffix: str = "") -> None:
    count = len(found.faces)
    click.echo(
        f"{query}: {count} face{'s' if count != 1 else ''} (threshold {found.threshold:.3f})"
        f"{suffix}"
    )
    click.echo(decisions_text(found.decisions))


def print_search(query: str, found: Found) -> None:
    search_header(query, found)
    for face in found.faces:
        click.echo(f"face {face.index + 1}: {box_text(face.box)}, detector {face.det_score:.2f}")
        print_matches(face.matches)


def summary_json(summary: Summary) -> dict[str, Any]:
    data = asdict(summary)
    data["failed"] = [{"path": o.path, "reason": o.reason} for o in summary.failed]
    data["seconds"] = round(summary.seconds, 2)
    del data["unindexed"]
    data["unindexed_faces"] = unindexed_json(summary)
    return data


def rejection_json(rejection: Rejection) -> dict[str, Any]:
    return {
        "reason": rejection.reason,
        "value": round(rejection.value, 4),
        "limit": rejection.limit,
    }


def unindexed_json(summary: Summary) -> list[dict[str, Any]]:
    """Rekognition's UnindexedFaces: each face the quality gate kept out, and why."""
    return [
        {
            "path": path,
            "face_index": face.index,
            "box": [round(v, 1) for v in face.box],
            **rejection_json(face.rejection),
        }
        for path, face in summary.unindexed
    ]


def print_unindexed(summary: Summary) -> None:
    if not summary.unindexed:
        return
    reasons = Counter(face.rejection.reason for _, face in summary.unindexed)
    opted_out = reasons.pop(OPTED_OUT, 0)
    if reasons:
        counts = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
        click.echo(f"faces not indexed by the quality gate: {counts} (--json lists each)")
    if opted_out:
        click.echo(f"faces not indexed because they match an opt-out: {opted_out}")


def print_summary(summary: Summary, queued: int = 0) -> None:
    """``queued``: images a gateway accepted that the run did not wait for."""
    rate = summary.images / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"{summary.images} images in {summary.seconds:.1f} s ({rate:.1f}/s): "
        f"{summary.indexed} indexed, {summary.unchanged} already indexed, "
        f"{len(summary.failed)} skipped; {summary.faces_indexed} faces indexed, "
        f"{summary.no_faces} images without a face"
    )
    print_unindexed(summary)
    if summary.failed:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(summary.failure_reasons().items()))
        click.echo(f"skipped: {reasons} (each listed on stderr)")
    if queued:
        click.echo(f"{queued} images queued at the gateway, not waited for (see --wait-timeout)")
    if summary.ignored:
        click.echo(f"{summary.ignored} files in the folders were not images and were ignored")
    for outcome in summary.failed:
        click.echo(f"skipped {outcome.path}: {outcome.reason}", err=True)


def print_erasure(erasure: Erasure) -> None:
    """The receipt of a delete: its first line as before receipts, then what to keep."""
    click.echo(f"deleted {erasure.faces} faces of {erasure.images} images")
    data = erasure.as_json()
    collections = ", ".join(f"{k} ({v})" for k, v in data["collections"].items()) or "none"
    rows = [
        ("receipt", erasure.receipt_id),
        ("at", data["deleted_at"]),
        ("selector", ", ".join(f"{k}={v}" for k, v in data["selector"].items())),
        ("collections", collections),
    ]
    for key, value in rows:
        click.echo(f"{key:<11} {value}")


def print_stats(stats: StoreStats) -> None:
    labels = ", ".join(f"{k} ({v})" for k, v in sorted(stats.labels.items())) or "none"
    rows = [
        ("data", stats.location),
        ("model", stats.model),
        ("images", f"{stats.images} ({stats.images_with_faces} with faces)"),
        ("faces", str(stats.faces)),
        ("labels", labels),
    ]
    for key, value in rows:
        click.echo(f"{key:<8} {value}")


def query_warnings_json(faces: list[QueryFace]) -> list[dict[str, Any]]:
    """The query faces that fail the indexing quality gate (searched all the same)."""
    return [{"face": f.index, **rejection_json(f.warning)} for f in faces if f.warning]


def print_query_warnings(query: str, faces: list[QueryFace]) -> None:
    for face in faces:
        if face.warning:
            click.echo(
                f"warning: face {face.index + 1} of {query} fails the quality gate: "
                f"{face.warning.describe()}; it was searched, but trust its matches less",
                err=True,
            )


def person_json(person: Person) -> dict[str, Any]:
    return {
        "label": person.label,
        "score": round(person.score, 4),
        "appearances": person.appearances,
        "best": match_json(person.best),
    }


def face_people_json(answer: FacePeople) -> dict[str, Any]:
    face = answer.face
    return {
        "index": face.index,
        "box": [round(v, 1) for v in face.box],
        "det_score": round(face.det_score, 4),
        "person": answer.people[0].label if answer.identified else None,
        "people": [person_json(p) for p in answer.people],
        "unlabelled_matches": answer.unlabelled,
    }


def print_by_person(query: str, answers: list[FacePeople], found: Found) -> None:
    search_header(query, found, ", by person")
    for answer in answers:
        face = answer.face
        click.echo(f"face {face.index + 1}: {box_text(face.box)}, detector {face.det_score:.2f}")
        if not answer.people:
            click.echo("  no labelled person at or above the match threshold")
        else:
            click.echo(
                f"  {'score':>6}  {'decision':<8}  {'seen':>4}  {'person':<16} "
                f"{'best appearance':<24} where"
            )
        for p in answer.people:
            click.echo(
                f"  {p.score:6.3f}  {p.best.decision:<8}  {p.appearances:4d}  {p.label:<16} "
                f"{box_text(p.best.box):<24} {where(p.best)}{when(p.best)}"
            )
        if answer.unlabelled:
            plural = "es" if answer.unlabelled != 1 else ""
            click.echo(f"  ({answer.unlabelled} match{plural} without a label left out)")
