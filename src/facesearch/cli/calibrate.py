"""``facesearch calibrate``: the impostor model search decisions are taken from, and thresholds
for stated false-match rates, from labelled photos. Wiring and formatting only; the work is in
evaluation.py and calibration.py."""

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from facesearch.calibration import (
    CALIBRATION_VARIABLE,
    FMRS,
    MATCH_FMR,
    MATCH_FPIR,
    POSSIBLE_FMR,
    POSSIBLE_FPIR,
    Calibration,
    OperatingPoint,
    fit_tail,
    operating_points,
    write_calibration,
)
from facesearch.cli import output
from facesearch.cli.common import json_option
from facesearch.errors import ConfigError
from facesearch.evaluation import LabelledScores, folder_scores, pairs_file_scores
from facesearch.models import FaceModels
from facesearch.settings import CoreSettings

GALLERY_SIZES = (1, 100, 1_000, 10_000, 100_000, 1_000_000)


@click.command()
@click.argument("source", metavar="FOLDER_OR_PAIRS", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="With a pairs file: the folder its image paths are relative to (default: the pairs "
    "file's own folder, as for LFW's pairsDevTest.txt).",
)
@click.option(
    "--write",
    "write_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Save the model as JSON; {CALIBRATION_VARIABLE}=FILE then makes every search's "
    "match / possible / no_match decision use it (the CLI's and a gateway's).",
)
@click.option(
    "--match-fpir",
    default=MATCH_FPIR,
    show_default=True,
    type=click.FloatRange(1e-6, 0.5),
    help="'match' at the score where at most this share of searches for someone not in the "
    "gallery return one.",
)
@click.option(
    "--possible-fpir",
    default=POSSIBLE_FPIR,
    show_default=True,
    type=click.FloatRange(1e-6, 0.5),
    help="'possible' at the score where at most this share of such searches return one.",
)
@json_option
@click.pass_obj
def calibrate(
    settings: CoreSettings,
    source: Path,
    root: Path | None,
    write_file: Path | None,
    match_fpir: float,
    possible_fpir: float,
    as_json: bool,
) -> None:
    """Model how high strangers score, from labelled photos, for search's decisions.

    FOLDER_OR_PAIRS is a folder with one sub-folder of photos per person (every pair of photos
    of one person is a genuine pair, every pair of photos of two people an impostor pair), or
    an LFW-style pairs file whose listed pairs are used (see --root).

    FMR, the false-match rate, is the fraction of impostor pairs scoring at or above a
    threshold: how often two different people would be called one. FNMR, the false non-match
    rate, is the fraction of genuine pairs scoring below it. The table gives the lowest
    threshold for FMR 1e-2, 1e-3 and 1e-4 as seen (1e-4 needs well over 10,000 impostor pairs).

    A search compares a face with every face of a gallery, so what matters there is FPIR, the
    share of searches for someone who is not in the gallery that still return a match; it
    grows with the gallery. The impostor scores' upper tail is fitted with a generalised
    Pareto law (from at least 500 pairs, better 10,000 or more), which gives the threshold of
    --match-fpir and --possible-fpir for any gallery size; the second table shows them.
    "match" and "possible" never go below the FMR 1e-4 and 1e-3 thresholds. --write saves
    the model for FACESEARCH_CALIBRATION; a process refuses a file made for another model.
    Each photo's face nearest the centre is used; photos without a face take part in no
    pair. Runs in this process only (no --gateway).
    """
    if root is not None and source.is_dir():
        raise click.UsageError("--root goes with a pairs file, not a folder")
    models = FaceModels(settings.models)
    with tqdm(unit="img", desc="embedding", disable=None, file=sys.stderr) as bar:
        if source.is_dir():
            scores = folder_scores(source, models, settings, lambda: bar.update(1))
        else:
            folder = root or source.parent
            scores = pairs_file_scores(folder, source, models, settings, lambda: bar.update(1))
    if len(scores.impostor) == 0:
        raise ConfigError(f"{source}: no different-person pair with a face on both sides")
    if possible_fpir < match_fpir:
        raise click.UsageError("--possible-fpir must not be below --match-fpir")
    points = operating_points(scores.genuine, scores.impostor, FMRS)
    calibration: Calibration | None = None
    try:
        tail = fit_tail(scores.impostor)
        calibration = Calibration(models.model_id, tail, match_fpir, possible_fpir, str(source))
    except ConfigError as exc:  # too few pairs: the per-pair points are still worth seeing
        if write_file is not None:
            raise ConfigError(f"{source}: nothing written to {write_file}: {exc}") from exc
        why = str(exc)
    report = report_json(source, models.model_id, calibration, scores, points)
    if calibration is None:
        report["no_model"] = why
    elif write_file is not None:
        write_calibration(write_file, calibration, report)
    if as_json:
        output.emit_json(report)
    else:
        print_report(report, points, write_file)


def report_json(
    source: Path,
    model: str,
    calibration: Calibration | None,
    scores: LabelledScores,
    points: list[OperatingPoint],
) -> dict[str, Any]:
    """What calibrate prints and writes; without a calibration (too few pairs to fit one),
    the per-pair points only."""
    modelled = (
        {}
        if calibration is None
        else {
            **calibration.as_json(),
            "decisions": [calibration.decisions(size).as_json() for size in GALLERY_SIZES],
        }
    )
    return {
        "model": model,
        "source": str(source),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "images": scores.images,
        "people": scores.people,
        "no_face": len(scores.no_face),
        "no_face_images": scores.no_face,
        "genuine_pairs": len(scores.genuine),
        "impostor_pairs": len(scores.impostor),
        "operating_points": [
            {**p.as_json(), "resolved": p.fmr * len(scores.impostor) >= 1} for p in points
        ],
        "match_floor_fmr": MATCH_FMR,
        "possible_floor_fmr": POSSIBLE_FMR,
        **modelled,
        "seconds": round(scores.seconds, 2),
    }


def print_report(
    report: dict[str, Any], points: list[OperatingPoint], write_file: Path | None
) -> None:
    click.echo(
        f"images       {report['images']} of {report['people']} people, "
        f"{report['no_face']} without a face"
    )
    click.echo(
        f"pairs        {report['genuine_pairs']:,} genuine (same person), "
        f"{report['impostor_pairs']:,} impostor (different people)"
    )
    click.echo(f"{'FMR':<12} {'threshold':>9} {'FNMR':>8}  impostors at or above")
    for point, row in zip(points, report["operating_points"], strict=True):
        fnmr = "-" if point.fnmr != point.fnmr else f"{point.fnmr:.2%}"  # NaN: no genuine pair
        note = "" if row["resolved"] else "  (too few impostor pairs for this FMR)"
        click.echo(
            f"{point.fmr:<12g} {point.threshold:>9.4f} {fnmr:>8}  {point.impostors_above:,}{note}"
        )
    if "no_model" in report:
        click.echo(f"no model     {report['no_model']}")
        click.echo(f"time         {report['seconds']:.1f} s")
        return
    tail = report["impostor_tail"]
    click.echo(
        f"tail         generalised Pareto over the top {tail['fraction']:.2%} of impostor "
        f"scores (from {tail['start']:.4f}): shape {tail['shape']:.3f}, scale {tail['scale']:.4f}"
    )
    click.echo(f"{'gallery':>12} {'match from':>10} {'FPIR':>8} {'possible from':>13} {'FPIR':>8}")
    for row in report["decisions"]:
        click.echo(
            f"{row['gallery_faces']:>12,} {row['match_threshold']:>10.4f} "
            f"{output.percent(row['match_fpir']):>8} {row['possible_threshold']:>13.4f} "
            f"{output.percent(row['possible_fpir']):>8}"
        )
    click.echo(f"time         {report['seconds']:.1f} s")
    if write_file is not None:
        click.echo(f"written to   {write_file} (use it with {CALIBRATION_VARIABLE}={write_file})")
