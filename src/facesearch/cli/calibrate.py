"""``facesearch calibrate``: thresholds for stated false-match rates, from labelled photos.
Wiring and formatting only; the work is in evaluation.py and calibration.py."""

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
    POSSIBLE_FMR,
    OperatingPoint,
    operating_points,
    write_points,
)
from facesearch.cli import output
from facesearch.cli.common import json_option
from facesearch.errors import ConfigError
from facesearch.evaluation import LabelledScores, folder_scores, pairs_file_scores
from facesearch.models import FaceModels
from facesearch.settings import CoreSettings


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
    help=f"Save the operating points as JSON; {CALIBRATION_VARIABLE}=FILE then makes every "
    "search's match / possible / no_match decision use them.",
)
@json_option
@click.pass_obj
def calibrate(
    settings: CoreSettings,
    source: Path,
    root: Path | None,
    write_file: Path | None,
    as_json: bool,
) -> None:
    """Choose score thresholds for false-match rates 1e-2, 1e-3 and 1e-4 on labelled photos.

    FOLDER_OR_PAIRS is a folder with one sub-folder of photos per person (every pair of photos
    of one person is a genuine pair, every pair of photos of two people an impostor pair), or
    an LFW-style pairs file whose listed pairs are used (see --root).

    FMR, the false-match rate, is the fraction of impostor pairs scoring at or above a
    threshold: how often two different people would be called one. The threshold printed for
    each FMR is the lowest that keeps it. FNMR, the false non-match rate, is the fraction of
    genuine pairs scoring below it: how often one person's two photos would be missed. An FMR
    of 1e-4 needs well over 10,000 impostor pairs to mean anything; with fewer, the threshold
    is just above the highest impostor score seen.

    Search output calls a score "match" at or above the FMR 1e-4 threshold, "possible" at or
    above the 1e-3 one, else "no_match" (a file from --write must hold both points). Each
    photo's face nearest the centre is used; photos without a face take part in no pair.
    Runs in this process only (no --gateway).
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
    points = operating_points(scores.genuine, scores.impostor, FMRS)
    report = report_json(source, models.model_id, scores, points)
    if write_file is not None:
        write_points(
            write_file, points, {k: v for k, v in report.items() if k != "operating_points"}
        )
    if as_json:
        output.emit_json(report)
    else:
        print_report(report, points, write_file)


def report_json(
    source: Path, model: str, scores: LabelledScores, points: list[OperatingPoint]
) -> dict[str, Any]:
    return {
        "source": str(source),
        "model": model,
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
        "match_fmr": MATCH_FMR,
        "possible_fmr": POSSIBLE_FMR,
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
    click.echo(f"time         {report['seconds']:.1f} s")
    if write_file is not None:
        click.echo(f"written to   {write_file} (use it with {CALIBRATION_VARIABLE}={write_file})")
