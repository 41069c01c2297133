"""Which face store the settings ask for, and moving an index from one store to another.

The Qdrant server at ``QDRANT_URL`` when it is set; else the embedded index of the data folder,
on Qdrant Edge in ``edge/`` (``FACESEARCH_STORE=edge``, the default) or on qdrant-client's
local mode in ``qdrant/`` (``local``). A data folder that an older facesearch filled in local
mode is moved into Qdrant Edge the first time Edge opens it: every image record, face and
staged video frame is copied, and only then is ``qdrant/`` renamed ``qdrant.migrated`` (kept,
never emptied: delete it once the new index answers). A move cut short is done again, over the
same ids, the next time.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facesearch.edge_store import EdgeFaceStore
from facesearch.settings import CoreSettings
from facesearch.store import FaceStore, QdrantFaceStore

log = logging.getLogger(__name__)

COPY_BATCH = 256  # image records (and their faces) read and written at a time
MIGRATED_SUFFIX = ".migrated"


@dataclass(frozen=True)
class Copied:
    images: int
    faces: int
    frames: int


Progress = Callable[[Copied], None]  # the running totals, after each batch


def copy_index(source: FaceStore, target: FaceStore, progress: Progress | None = None) -> Copied:
    """Write every image record, face (with its vector) and staged frame of ``source``'s model
    into ``target``. Idempotent: the ids are the same, so a copy cut short is done again."""
    images = faces = frames = 0
    for items in source.export(COPY_BATCH):
        target.put_images(items)
        images += len(items)
        faces += sum(len(found) for _, found in items)
        if progress:
            progress(Copied(images, faces, frames))
    for page in source.export_staged():
        for frame in page:
            target.stage_frame(frame)
        frames += len(page)
    return Copied(images, faces, frames)


def holds_local_mode(folder: Path) -> bool:
    """Whether ``folder`` is an index qdrant-client's local mode wrote (its ``meta.json``)."""
    return (folder / "meta.json").is_file()


def open_store(
    settings: CoreSettings, model_id: str, dim: int, progress: Progress | None = None
) -> FaceStore:
    """The store the settings name; an Edge index first takes in a local-mode index left in
    the data folder (``progress`` sees that copy's totals)."""
    if settings.qdrant_url or settings.store == "local":
        path, url = settings.qdrant_path, settings.qdrant_url
        return QdrantFaceStore.open(model_id, dim, path, url, hnsw=settings.hnsw)
    store = EdgeFaceStore.open(model_id, dim, settings.edge_path, hnsw=settings.hnsw)
    try:
        if holds_local_mode(settings.qdrant_path):
            migrate_local_mode(settings.qdrant_path, store, progress)
    except BaseException:
        store.close()
        raise
    return store


def migrate_local_mode(folder: Path, target: FaceStore, progress: Progress | None) -> Copied:
    """Copy the local-mode index in ``folder`` into ``target``, then rename the folder."""
    kept = folder.with_name(folder.name + MIGRATED_SUFFIX)
    log.warning(
        "moving the index at %s (qdrant-client's local mode) into Qdrant Edge at %s; "
        "%s is kept as %s",
        folder,
        target.location,
        folder,
        kept,
    )
    source = QdrantFaceStore.open(target.model_id, target.dim, folder)
    try:
        copied = copy_index(source, target, progress)
    finally:
        source.close()
    if kept.exists():  # an earlier move's: keep both
        kept = kept.with_name(f"{kept.name}-{sum(1 for _ in folder.parent.glob(kept.name + '*'))}")
    folder.rename(kept)
    log.warning(
        "moved %d images, %d faces and %d staged video frames into %s; %s can be deleted once "
        "searches answer as before",
        copied.images,
        copied.faces,
        copied.frames,
        target.location,
        kept,
    )
    return copied
