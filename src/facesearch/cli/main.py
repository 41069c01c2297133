"""The ``facesearch`` command: index folders of photos and find where a face appears, in one
process, with an embedded Qdrant on disk. Wiring only; the work lives in the library."""

import logging
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from facesearch import __version__, identities, report
from facesearch.cli import output
from facesearch.cli.audit import audit
from facesearch.cli.broker import broker
from facesearch.cli.calibrate import calibrate
from facesearch.cli.common import (
    EXIT_PARTIAL,
    backend,
    data_dir_option,
    gateway_option,
    json_option,
    run_index,
    wait_timeout_option,
)
from facesearch.cli.compare import compare
from facesearch.cli.group import ReportingGroup
from facesearch.cli.keys import keys
from facesearch.cli.migrate import migrate
from facesearch.cli.optout import optout
from facesearch.cli.stack import stack
from facesearch.cli.tools import demo, demo_photos, eval_group
from facesearch.cli.video import show_frame
from facesearch.errors import FaceSearchError, NoFaceError, StoreError
from facesearch.ids import image_id, looks_like_image_id
from facesearch.records import Filters, Selector
from facesearch.searching import Found
from facesearch.settings import CoreSettings

__all__ = ["cli", "demo_photos", "main"]
TOP_K = 10
TOP_K_BY_PERSON = 100  # appearances are counted among the matches: look further


@click.group(
    cls=ReportingGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit status: 0 done; 1 error; 2 bad usage; 3 done, but some inputs were skipped.\n\n"
    "Settings come from FACESEARCH_* variables (see the README). The bundled models are "
    "insightface's buffalo_s pack: non-commercial research use only.",
)
@click.version_option(__version__, prog_name="facesearch")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Self-hosted reverse face search: index every face in your photos, then find where a
    face appears, with a score."""
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = CoreSettings.from_env()


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--label", default="", help="Label every face found with this name (a person).")
@click.option(
    "--label-from-dir", is_flag=True, help="Label each image with the name of its folder."
)
@click.option(
    "--label-from-name",
    is_flag=True,
    help="Label each image with its file name without the extension (compare's known folder: "
    "alice.jpg is alice).",
)
@click.option("--source-url", default="", help="Record this URL as where the images came from.")
@click.option("--collection", default="default", show_default=True, help="Gallery to index into.")
@click.option(
    "--video-fps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Frames sampled per second of video, besides the first frame after each scene cut "
    "[default: $FACESEARCH_VIDEO_FPS, else 2].",
)
@click.option(
    "--by-reference",
    is_flag=True,
    help="With --gateway: send each file's path (a file:// URI) instead of its bytes. The "
    "gateway and the detector read the file, so they must see it at the same path, inside "
    "their FACESEARCH_URI_ROOTS.",
)
@data_dir_option
@gateway_option
@wait_timeout_option
@json_option
@click.pass_obj
def index(
    settings: CoreSettings,
    paths: tuple[Path, ...],
    label: str,
    label_from_dir: bool,
    label_from_name: bool,
    source_url: str,
    collection: str,
    video_fps: float | None,
    by_reference: bool,
    data_dir: Path | None,
    gateway: str | None,
    wait_timeout: float,
    as_json: bool,
) -> None:
    """Index every face in PATHS (image and video files, or folders searched recursively).

    Reads JPEG, PNG, WebP, BMP, TIFF (and the first frame of a GIF), honouring EXIF
    orientation. Videos (MP4, M4V, MOV, MKV, WebM, AVI) are sampled a few frames a second, faces
    are tracked across frames, and each track is indexed once by its best faces, with its
    times (embedded mode only). Indexing the same bytes again adds nothing. Files that cannot
    be read are skipped with their reason; the others are indexed and the exit status is 3.

    With --gateway the files are sent to the gateway, then the command waits (--wait-timeout)
    until its pipeline has indexed each, or failed it with a reason.

    A face that fails the quality gate (too small, blurred, turned too far, or a low detector
    score: FACESEARCH_MIN_FACE_PX, _MIN_SHARPNESS, _MAX_YAW, _MIN_DET_SCORE) is not indexed;
    the summary counts these by reason and --json lists each under "unindexed_faces".
    """
    if label and label_from_dir:
        raise click.UsageError("give --label or --label-from-dir, not both")
    if label_from_name and (label or label_from_dir):
        raise click.UsageError("give one of --label, --label-from-dir, --label-from-name")
    if video_fps is not None:
        settings = replace(settings, video=replace(settings.video, fps=video_fps))
    with backend(settings, data_dir, gateway, wait_timeout, by_reference) as work:
        summary = run_index(
            work, list(paths), label, label_from_dir, source_url, collection, label_from_name
        )
    if as_json:
        output.emit_json(output.summary_json(summary))
    else:
        output.print_summary(summary, summary.queued)
    if summary.failed:
        sys.exit(EXIT_PARTIAL)


def read_query(path: Path) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise FaceSearchError(f"cannot read the query image {path}: {exc.strerror}") from exc


@cli.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option(
    "--top-k",
    default=None,
    type=click.IntRange(1, 1000),
    help=f"Matches per face [default: {TOP_K}; {TOP_K_BY_PERSON} with --by-person, as a "
    "person's appearances are counted among them].",
)
@click.option(
    "--threshold",
    default=None,
    type=click.FloatRange(-1.0, 1.0),
    help="Lowest cosine similarity to report. The default is the 'possible' threshold of the "
    "gallery searched (it rises with the number of faces the filters leave); -1 shows the "
    "nearest faces whatever their score.",
)
@click.option("--label", default="", help="Only faces with this label.")
@click.option("--collection", default="", help="Only faces in this gallery.")
@click.option(
    "--by-person",
    is_flag=True,
    help="Answer per person: for each face, the labelled person it is, with their best score, "
    "how many matching faces they have, and the best one's box and image. A face is given at "
    "most one person scoring at or above the gallery's 'match' threshold, and a person at most "
    "one face of IMAGE (faces and people paired jointly, by the Hungarian algorithm); matches "
    "without a label are counted, not listed.",
)
@click.option(
    "--all",
    "everyone",
    is_flag=True,
    help="With --by-person: also list the other people among the matches (each under the face "
    "they resemble most), not only the one each face was given.",
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the answer as one self-contained HTML page (pictures inline): the query "
    "with its faces numbered, and per face its matches as cards, each with the face, its "
    "source image (or video frame) boxed, score, decision, label and a link to the source.",
)
@data_dir_option
@gateway_option
@json_option
@click.pass_obj
def search(
    settings: CoreSettings,
    image: Path,
    top_k: int | None,
    threshold: float | None,
    label: str,
    collection: str,
    by_person: bool,
    everyone: bool,
    html: Path | None,
    data_dir: Path | None,
    gateway: str | None,
    as_json: bool,
) -> None:
    """Find where the faces in IMAGE appear among the indexed ones ("-" reads standard input).

    Every face in IMAGE is reported with its best matches: score (cosine similarity, 1 is
    identical), decision, label, box and the file or URL it came from. Decisions hold for the
    gallery searched, the faces the filters leave: "match" at the score where at most 1% of
    searches for someone who is not in the gallery would return one (FPIR 1%), "possible" at
    FPIR 10%, else "no_match"; the answer states the gallery's size and the FPIR each stands
    for (FACESEARCH_CALIBRATION, from facesearch calibrate, replaces the bundled LFW model; a
    gateway uses its own). A face that would fail the indexing quality gate is searched all
    the same, with a warning (stderr; "warnings" in --json, present only when there are any).
    """
    data = read_query(image)
    top_k = top_k or (TOP_K_BY_PERSON if by_person else TOP_K)
    with backend(settings, data_dir, gateway) as work:
        try:
            found = work.search(data, top_k, threshold, Filters(label, "", collection))
        except NoFaceError as exc:
            raise NoFaceError(f"no face found in {image}") from exc
    if everyone and not by_person:
        raise click.UsageError("--all goes with --by-person")
    answer = found_json(str(image), found, by_person, everyone)
    if html is not None:
        write_report(html, data, answer, settings, as_json)
    show_found(str(image), found, by_person, everyone, as_json)


def write_report(
    path: Path, query: bytes, answer: dict[str, Any], settings: CoreSettings, quiet: bool
) -> None:
    """The HTML page of a search; sources that cannot be read here are shown as missing."""
    sources = report.LocalSources(settings.limits, report.all_matches(answer))
    report.write_page(path, report.search_page(query, answer, sources, settings.limits))
    if not quiet:  # with --json, stderr stays as it was and stdout holds the JSON alone
        click.echo(f"report written to {path}", err=True)


def show_found(query: str, found: Found, by_person: bool, everyone: bool, as_json: bool) -> None:
    if as_json:
        output.emit_json(found_json(query, found, by_person, everyone))
        return
    output.print_query_warnings(query, found.faces)
    if by_person:
        output.print_by_person(query, people_of(found, everyone), found)
    else:
        output.print_search(query, found)


def people_of(found: Found, everyone: bool) -> list[identities.FacePeople]:
    return identities.by_person(found.faces, found.decisions.match_threshold, everyone)


def found_json(query: str, found: Found, by_person: bool, everyone: bool) -> dict[str, Any]:
    """The answer as --json prints it, and as the HTML report shows it."""
    faces = (
        [output.face_people_json(a) for a in people_of(found, everyone)]
        if by_person
        else [output.query_face_json(f) for f in found.faces]
    )
    data = {
        "query": query,
        "model": found.model,
        "threshold": found.threshold,
        "decisions": found.decisions.as_json(),
        "faces": faces,
    }
    warnings = output.query_warnings_json(found.faces)
    if warnings:  # absent rather than empty, so the answer for a good query is unchanged
        data["warnings"] = warnings
    return data


@cli.command()
@click.option(
    "--image", "image", default="", help="An image file, or an image id (sha256 of its bytes)."
)
@click.option("--label", default="", help="Every face with this label.")
@click.option("--source-url", default="", help="Every face indexed from this URL (or file path).")
@data_dir_option
@gateway_option
@json_option
@click.pass_obj
def delete(
    settings: CoreSettings,
    image: str,
    label: str,
    source_url: str,
    data_dir: Path | None,
    gateway: str | None,
    as_json: bool,
) -> None:
    """Delete faces from the index: those of one image, of a label, or of a source.

    Prints a receipt (its id, when, what was asked, what was removed) to keep as proof.
    Whatever the selector names that was submitted before and is still in the pipeline is
    dropped when it arrives; a submission after the delete is indexed."""
    if sum(bool(v) for v in (image, label, source_url)) != 1:
        raise click.UsageError("give exactly one of --image, --label, --source-url")
    selector = Selector(
        image_id=resolve_image(image) if image else "", label=label, source_uri=source_url
    )
    with backend(settings, data_dir, gateway) as work:
        erased = work.delete(selector)
    if as_json:
        output.emit_json(erased.as_json())
    else:
        output.print_erasure(erased)


def resolve_image(text: str) -> str:
    path = Path(text)
    if path.is_file():
        try:
            return image_id(path.read_bytes())
        except OSError as exc:
            raise FaceSearchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if looks_like_image_id(text):
        return text.lower()
    raise StoreError(f"{text} is neither a file nor an image id (64 hex digits)")


@cli.command()
@data_dir_option
@gateway_option
@json_option
@click.pass_obj
def stats(
    settings: CoreSettings, data_dir: Path | None, gateway: str | None, as_json: bool
) -> None:
    """How much is indexed: images, faces, labels, the model and where the data lives."""
    with backend(settings, data_dir, gateway) as work:
        result = work.stats()
    if as_json:
        output.emit_json(asdict(result))
    else:
        output.print_stats(result)


for command in (audit, broker, compare, demo, eval_group, keys, migrate, optout, stack):
    cli.add_command(command)
cli.add_command(show_frame)
cli.add_command(calibrate)


def main() -> None:
    cli(prog_name="facesearch")
