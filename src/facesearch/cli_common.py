"""What the facesearch commands share: options, opening the models and the index, and an
indexing run with its progress bar."""

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from tqdm import tqdm

from facesearch.indexing import Indexer, Outcome, Summary, collect_inputs
from facesearch.models import FaceModels
from facesearch.settings import CoreSettings
from facesearch.store import QdrantFaceStore

EXIT_PARTIAL = 3  # the run finished but some inputs were skipped
F = TypeVar("F", bound=Callable[..., Any])


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
            disable=None if show_progress else True,  # None: shown on a terminal only
            file=sys.stderr,
        ) as bar,
    ):

        def record(outcome: Outcome) -> None:
            summary.add(outcome)
            bar.update(1)
            bar.set_postfix(faces=summary.faces_indexed, skipped=len(summary.failed), refresh=False)

        Indexer(models, store, settings, source_url, collection).run(inputs, record)
    summary.seconds = time.perf_counter() - start
    return summary
