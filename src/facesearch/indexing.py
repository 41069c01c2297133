"""Index files and folders into the face store, one image at a time, never stopping on a bad
one: each input ends as indexed, unchanged, or failed with its reason."""

import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesearch.detection import DetectorInput, prepare_input
from facesearch.errors import FaceSearchError, ImageTooLargeError
from facesearch.ids import image_id as compute_image_id
from facesearch.images import IMAGE_SUFFIXES, decode_image
from facesearch.models import FaceModels
from facesearch.optout import OptOutCheck, screen_records
from facesearch.pipeline import analyze_decoded, apply_gate, embed, to_records
from facesearch.records import FaceRecord, ImageMeta, ImageRecord, UnindexedFace
from facesearch.settings import CoreSettings
from facesearch.store import FaceStore
from facesearch.video import check_video_size, file_sha256
from facesearch.video_indexing import index_video

_FLUSH_EVERY = 32
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
_PREFETCH = 8  # inputs read and decoded ahead of the models


@dataclass(frozen=True)
class InputFile:
    path: Path
    label: str


@dataclass(frozen=True)
class Outcome:
    path: str
    status: str  # indexed | unchanged | failed
    image_id: str = ""
    faces: int = 0
    reason: str = ""
    unindexed: tuple[UnindexedFace, ...] = ()  # faces the quality gate kept out
    tracks: int = 0  # a video's face tracks (``faces`` counts the faces stored for them)


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
    unindexed: list[tuple[str, UnindexedFace]] = field(default_factory=list)  # (path, face)

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
            self.unindexed.extend((outcome.path, face) for face in outcome.unindexed)

    def failure_reasons(self) -> dict[str, int]:
        return dict(Counter(o.reason.split(":")[0] for o in self.failed))


def collect_inputs(
    paths: Iterable[Path], label: str, label_from_dir: bool
) -> tuple[list[InputFile], int]:
    """Files to index, in a stable order, and how many files in folders were not images."""
    found: list[InputFile] = []
    ignored = 0

    def labelled(path: Path) -> InputFile:
        return InputFile(path, label or (path.parent.name if label_from_dir else ""))

    for root in paths:
        if not root.is_dir():
            found.append(labelled(root))
            continue
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                if path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                    found.append(labelled(path))
                else:
                    ignored += 1
    return found, ignored


@dataclass(frozen=True)
class _Loaded:
    """An input read, hashed, looked up and decoded ahead of the models."""

    item: InputFile
    meta: ImageMeta
    image_id: str
    previous: ImageRecord | None
    bgr: np.ndarray | None  # None when the image is already indexed as it is, or a video
    detector_input: DetectorInput | None = None
    video: bool = False  # a video to index: its frames are read while it is indexed


class Indexer:
    """Runs the pipeline over inputs: a reader thread reads, hashes and decodes a few inputs
    ahead, the calling thread detects and embeds, a writer thread stores batches. Only the
    models' work stays on the calling thread."""

    def __init__(
        self,
        models: FaceModels,
        store: FaceStore,
        settings: CoreSettings,
        source_url: str = "",
        collection: str = "default",
        optouts: OptOutCheck | None = None,
    ) -> None:
        """``optouts``: the opt-out gallery faces are screened against (none: not screened)."""
        self.models = models
        self.optouts = optouts
        self.store = store
        self.settings = settings
        self.video = settings.video
        self.source_url = source_url
        self.collection = collection

    def run(self, inputs: list[InputFile], on_outcome: Callable[[Outcome], None]) -> None:
        pending: list[tuple[ImageRecord, list[FaceRecord]]] = []
        writing: Future[None] | None = None
        seen: dict[str, int] = {}  # image id -> faces, for copies of one file in this run
        with (
            ThreadPoolExecutor(1, thread_name_prefix="read") as reader,
            ThreadPoolExecutor(1, thread_name_prefix="write") as writer,
        ):
            for loaded in _prefetch(reader, inputs, self._load):
                outcome, records = self._index_one(loaded, seen)
                if records:
                    pending.append(records)
                if len(pending) >= _FLUSH_EVERY:
                    writing = _write(writer, writing, self.store, pending)
                    pending = []
                on_outcome(outcome)
            last = _write(writer, writing, self.store, pending)
            if last is not None:
                last.result()

    def _load(self, item: InputFile) -> "_Loaded | Outcome":
        """Read, hash, look up, decode and make the detector input of one input (in the reader
        thread)."""
        path = str(item.path)
        try:
            if item.path.suffix.lower() in VIDEO_SUFFIXES:
                return self._load_video(item)
            limit = self.settings.limits.max_bytes
            size = item.path.stat().st_size
            if size > limit:
                raise ImageTooLargeError(f"{size} bytes exceeds the limit of {limit} bytes")
            data = item.path.read_bytes()
            image_id = compute_image_id(data)
            local = str(item.path.resolve())
            meta = ImageMeta(self.source_url or local, local, item.label, self.collection)
            previous = self.store.get_image(image_id)
            if self._already_indexed(previous, meta):
                return _Loaded(item, meta, image_id, previous, None)
            bgr = decode_image(data, self.settings.limits)
            prepared = prepare_input(bgr, self.settings.models.det_max_side)
            return _Loaded(item, meta, image_id, previous, bgr, prepared)
        except FaceSearchError as exc:
            return Outcome(path, "failed", reason=f"{exc.code}: {exc}")
        except OSError as exc:
            return Outcome(path, "failed", reason=f"unreadable: {exc.strerror or exc}")

    def _load_video(self, item: InputFile) -> "_Loaded":
        """Hash and look up a video; its frames are read later, while it is indexed."""
        check_video_size(item.path, self.video)  # a huge file is refused before it is hashed
        image_id = file_sha256(item.path)
        local = str(item.path.resolve())
        meta = ImageMeta(self.source_url or local, local, item.label, self.collection)
        previous = self.store.get_image(image_id)
        video = not self._already_indexed(previous, meta)
        return _Loaded(item, meta, image_id, previous, None, video=video)

    def _index_video(
        self, loaded: "_Loaded"
    ) -> tuple[Outcome, tuple[ImageRecord, list[FaceRecord]] | None]:
        path = str(loaded.item.path)
        try:
            done = index_video(
                loaded.item.path,
                loaded.image_id,
                loaded.meta,
                self.models,
                self.settings,
                self.video,
            )
        except FaceSearchError as exc:
            return Outcome(path, "failed", reason=f"{exc.code}: {exc}"), None
        image, faces = self._screened(done.image, done.faces)
        outcome = Outcome(
            path,
            "indexed",
            loaded.image_id,
            len(faces),
            tracks=image.tracks,
            unindexed=image.unindexed,
        )
        return outcome, (image, faces)

    def _screened(
        self, image: ImageRecord, faces: list[FaceRecord]
    ) -> tuple[ImageRecord, list[FaceRecord]]:
        """The records without the faces that match an opt-out (``optout.screen_records``)."""
        if self.optouts is None:
            return image, faces
        return screen_records(image, faces, self.optouts.gallery())

    def _already_indexed(self, previous: ImageRecord | None, meta: ImageMeta) -> bool:
        """The same bytes with the same label and collection are one image, wherever the file
        is now: the record keeps the path it was first indexed from. A new label, collection or
        --source-url indexes it again, over the same point ids."""
        return (
            previous is not None
            and previous.model == self.store.model_id
            and (previous.meta.label, previous.meta.collection) == (meta.label, meta.collection)
            and (not self.source_url or previous.meta.source_uri == meta.source_uri)
        )

    def _index_one(
        self, loaded: "_Loaded | Outcome", seen: dict[str, int]
    ) -> tuple[Outcome, tuple[ImageRecord, list[FaceRecord]] | None]:
        if isinstance(loaded, Outcome):
            return loaded, None
        path = str(loaded.item.path)
        if loaded.image_id in seen:
            return Outcome(path, "unchanged", loaded.image_id, seen[loaded.image_id]), None
        if loaded.video:
            outcome, records = self._index_video(loaded)
            if records is not None:  # a copy of a video that failed fails again, not unchanged
                seen[loaded.image_id] = outcome.faces
            return outcome, records
        if loaded.bgr is None:
            count = loaded.previous.faces if loaded.previous else 0
            return Outcome(path, "unchanged", loaded.image_id, count), None
        analyzed = analyze_decoded(
            loaded.image_id, loaded.bgr, self.models, self.settings, loaded.detector_input
        )
        analyzed, unindexed = apply_gate(analyzed, self.settings.quality)
        vectors = embed(self.models, analyzed)
        image, faces = self._screened(
            *to_records(analyzed, vectors, loaded.meta, self.store.model_id, unindexed)
        )
        seen[loaded.image_id] = len(faces)
        outcome = Outcome(path, "indexed", loaded.image_id, len(faces), unindexed=image.unindexed)
        return outcome, (image, faces)


def _write(
    writer: ThreadPoolExecutor,
    previous: "Future[None] | None",
    store: FaceStore,
    batch: list[tuple[ImageRecord, list[FaceRecord]]],
) -> "Future[None] | None":
    """Wait for the previous batch (so at most one is in flight), then start this one."""
    if previous is not None:
        previous.result()
    return writer.submit(store.put_images, batch) if batch else None


def _prefetch(
    pool: ThreadPoolExecutor,
    items: list[InputFile],
    load: Callable[[InputFile], "_Loaded | Outcome"],
) -> Iterator["_Loaded | Outcome"]:
    """``load`` each item in ``pool``, a few ahead of the consumer, results in order."""
    window: deque[Future[_Loaded | Outcome]] = deque()
    for item in items:
        window.append(pool.submit(load, item))
        if len(window) > _PREFETCH:
            yield window.popleft().result()
    while window:
        yield window.popleft().result()
