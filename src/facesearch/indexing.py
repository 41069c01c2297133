"""Index files and folders into the face store, one image at a time, never stopping on a bad
one: each input ends as indexed, unchanged, or failed with its reason."""

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from facesearch.errors import FaceSearchError, ImageTooLargeError, UnsupportedTypeError
from facesearch.ids import image_id as compute_image_id
from facesearch.images import IMAGE_SUFFIXES
from facesearch.models import FaceModels
from facesearch.pipeline import analyze, embed, to_records
from facesearch.records import FaceRecord, ImageMeta, ImageRecord
from facesearch.settings import CoreSettings
from facesearch.store import QdrantFaceStore

log = logging.getLogger(__name__)

_FLUSH_EVERY = 32
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
_PREFETCH = 4


@dataclass(frozen=True)
class InputFile:
    path: Path
    label: str
    explicit: bool  # named on the command line, not found by walking a folder


@dataclass(frozen=True)
class Outcome:
    path: str
    status: str  # indexed | unchanged | failed
    image_id: str = ""
    faces: int = 0
    reason: str = ""


@dataclass
class Summary:
    images: int = 0
    indexed: int = 0
    unchanged: int = 0
    faces_indexed: int = 0
    no_faces: int = 0
    ignored: int = 0
    failed: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.images += 1
        if outcome.status == "failed":
            self.failed.append(outcome)
        elif outcome.status == "unchanged":
            self.unchanged += 1
        else:
            self.indexed += 1
            self.faces_indexed += outcome.faces
            self.no_faces += outcome.faces == 0

    def failure_reasons(self) -> dict[str, int]:
        return dict(Counter(o.reason.split(":")[0] for o in self.failed))


def collect_inputs(
    paths: Iterable[Path], label: str, label_from_dir: bool
) -> tuple[list[InputFile], int]:
    """Files to index, in a stable order, and how many files in folders were not images."""
    found: list[InputFile] = []
    ignored = 0
    for root in paths:
        if not root.is_dir():
            found.append(
                InputFile(root, label or (root.parent.name if label_from_dir else ""), True)
            )
            continue
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    ignored += 1
                    continue
                found.append(
                    InputFile(path, label or (path.parent.name if label_from_dir else ""), False)
                )
    return found, ignored


@dataclass(frozen=True)
class _Loaded:
    item: InputFile
    data: bytes
    image_id: str


class Indexer:
    """Runs the pipeline over inputs and writes to the store in small batches."""

    def __init__(
        self,
        models: FaceModels,
        store: QdrantFaceStore,
        settings: CoreSettings,
        source_url: str = "",
        collection: str = "default",
    ) -> None:
        self.models = models
        self.store = store
        self.settings = settings
        self.source_url = source_url
        self.collection = collection
        self._pending: list[tuple[ImageRecord, list[FaceRecord]]] = []

    def run(self, inputs: list[InputFile], on_outcome: Callable[[Outcome], None]) -> None:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read") as reader:
            for loaded in _prefetch(reader, inputs, self._read):
                on_outcome(self._index_one(loaded))
                if len(self._pending) >= _FLUSH_EVERY:
                    self.flush()
        self.flush()

    def flush(self) -> None:
        if self._pending:
            self.store.put_images(self._pending)
            self._pending = []

    def _read(self, item: InputFile) -> _Loaded | Outcome:
        """Read and hash a file (in the reader thread, ahead of the models)."""
        try:
            if item.path.suffix.lower() in VIDEO_SUFFIXES:
                raise UnsupportedTypeError("video files are not indexed yet")
            size = item.path.stat().st_size
            if size > self.settings.limits.max_bytes:
                raise ImageTooLargeError(
                    f"{size} bytes exceeds the limit of {self.settings.limits.max_bytes} bytes"
                )
            data = item.path.read_bytes()
        except FaceSearchError as exc:
            return Outcome(str(item.path), "failed", reason=f"{exc.code}: {exc}")
        except OSError as exc:
            return Outcome(str(item.path), "failed", reason=f"unreadable: {exc.strerror or exc}")
        return _Loaded(item, data, compute_image_id(data))

    def _index_one(self, loaded: "_Loaded | Outcome") -> Outcome:
        if isinstance(loaded, Outcome):
            return loaded
        item = loaded.item
        meta = ImageMeta(
            source_uri=self.source_url or str(item.path.resolve()),
            path=str(item.path.resolve()),
            label=item.label,
            collection=self.collection,
        )
        previous = self.store.get_image(loaded.image_id)
        if previous and previous.meta == meta and previous.model == self.store.model_id:
            return Outcome(str(item.path), "unchanged", loaded.image_id, previous.faces)
        try:
            analyzed = analyze(loaded.data, self.models, self.settings)
        except FaceSearchError as exc:
            return Outcome(str(item.path), "failed", loaded.image_id, reason=f"{exc.code}: {exc}")
        vectors = embed(self.models, analyzed)
        self._pending.append(to_records(analyzed, vectors, meta, self.store.model_id))
        return Outcome(str(item.path), "indexed", loaded.image_id, len(analyzed.faces))


def _prefetch(
    pool: ThreadPoolExecutor,
    items: list[InputFile],
    read: Callable[[InputFile], "_Loaded | Outcome"],
) -> Iterator["_Loaded | Outcome"]:
    """``read`` each item in ``pool``, a few ahead of the consumer, results in order."""
    window: list[Future[_Loaded | Outcome]] = []
    for item in items:
        window.append(pool.submit(read, item))
        if len(window) > _PREFETCH:
            yield window.pop(0).result()
    for future in window:
        yield future.result()
