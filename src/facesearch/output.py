"""How results look on a terminal and as JSON; the CLI's only formatting code."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from facesearch.indexing import Summary
from facesearch.records import Box, Match, StoreStats
from facesearch.searching import QueryFace


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


def box_text(box: Box) -> str:
    x1, y1, x2, y2 = (round(v) for v in box)
    return f"x {x1}-{x2}, y {y1}-{y2}"


def match_json(match: Match) -> dict[str, Any]:
    data = asdict(match)
    data["box"] = [round(v, 1) for v in match.box]
    data["score"] = round(match.score, 4)
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


def print_matches(matches: list[Match], indent: str = "  ", names_only: bool = False) -> None:
    if not matches:
        click.echo(f"{indent}no match at or above the threshold")
        return
    click.echo(f"{indent}{'score':>6}  {'label':<16} {'box':<24} where")
    for m in matches:
        label = m.label or "-"
        place = Path(where(m)).name if names_only else where(m)
        click.echo(f"{indent}{m.score:6.3f}  {label:<16} {box_text(m.box):<24} {place}")


def print_search(query: str, faces: list[QueryFace], threshold: float) -> None:
    click.echo(
        f"{query}: {len(faces)} face{'s' if len(faces) != 1 else ''} (threshold {threshold:.3f})"
    )
    for face in faces:
        click.echo(f"face {face.index + 1}: {box_text(face.box)}, detector {face.det_score:.2f}")
        print_matches(face.matches)


def summary_json(summary: Summary) -> dict[str, Any]:
    data = asdict(summary)
    data["failed"] = [{"path": o.path, "reason": o.reason} for o in summary.failed]
    data["seconds"] = round(summary.seconds, 2)
    return data


def print_summary(summary: Summary, queued: int = 0) -> None:
    """``queued``: images a gateway accepted that the run did not wait for."""
    rate = summary.images / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"{summary.images} images in {summary.seconds:.1f} s ({rate:.1f}/s): "
        f"{summary.indexed} indexed, {summary.unchanged} already indexed, "
        f"{len(summary.failed)} skipped; {summary.faces_indexed} faces indexed, "
        f"{summary.no_faces} images without a face"
    )
    if summary.failed:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(summary.failure_reasons().items()))
        click.echo(f"skipped: {reasons} (each listed on stderr)")
    if queued:
        click.echo(f"{queued} images queued at the gateway, not waited for (see --wait-timeout)")
    if summary.ignored:
        click.echo(f"{summary.ignored} files in the folders were not images and were ignored")
    for outcome in summary.failed:
        click.echo(f"skipped {outcome.path}: {outcome.reason}", err=True)


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
