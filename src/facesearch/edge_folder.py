"""The folder of a Qdrant Edge index (``edge_store``): its lock, which lets one process at a
time open it, its manifest (format version, model id, dimension), and the errors of a folder
that cannot be opened, each saying what to do."""

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from facesearch.errors import StoreError
from facesearch.store import FRAMES_COLLECTION, IMAGES_COLLECTION, in_use

FORMAT_VERSION = 1  # of the folder's layout; a newer one is refused, naming its version
MANIFEST, LOCK_FILE = "manifest.json", ".lock"


def damaged(path: Path, why: str) -> StoreError:
    return StoreError(
        f"the index at {path} is damaged or was left half-written ({why}); to rebuild it, "
        f"delete {path} and index the files again"
    )


class FolderLock:
    """One process at a time per index folder: an exclusive ``flock`` on ``<path>/.lock``, let
    go by ``release`` or when the process ends. ``flock`` rather than ``fcntl``'s record locks,
    which a second open in the same process would be granted."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle: IO[bytes] | None = handle

    @classmethod
    def acquire(cls, folder: Path) -> "FolderLock":
        try:
            handle = (folder / LOCK_FILE).open("ab")
        except OSError as exc:
            raise StoreError(f"cannot open Qdrant Edge at {folder}: {exc}") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise in_use(folder) from exc
        return cls(handle)

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file lets the lock go
            self._handle = None


@dataclass(frozen=True)
class Manifest:
    format: int
    model: str
    dim: int

    @classmethod
    def read(cls, folder: Path) -> "Manifest | None":
        """The folder's manifest; None where there is none. A newer format is refused before
        anything else is read from it."""
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise damaged(folder, f"{MANIFEST} cannot be read: {exc}") from exc
        version = data.get("format") if isinstance(data, dict) else None
        if not isinstance(version, int):
            raise damaged(folder, f"{MANIFEST} has no format version")
        if version > FORMAT_VERSION:
            raise StoreError(
                f"the index at {folder} was written by a newer facesearch (index format "
                f"{version}; this one reads up to {FORMAT_VERSION}); upgrade facesearch or use "
                "another --data-dir"
            )
        model, dim = data.get("model"), data.get("dim")
        if not isinstance(model, str) or not model or not isinstance(dim, int):
            raise damaged(folder, f"{MANIFEST} lacks the model or its dimension")
        return cls(version, model, dim)

    def write(self, folder: Path) -> None:
        """Atomically: a crash leaves the old manifest or the new one, never half of one."""
        text = json.dumps({"format": self.format, "model": self.model, "dim": self.dim})
        partial = folder / (MANIFEST + ".partial")
        with partial.open("w", encoding="utf-8") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        partial.replace(folder / MANIFEST)


def check_manifest(manifest: Manifest | None, folder: Path, model_id: str, dim: int) -> None:
    if manifest is None:
        leftovers = [
            child.name
            for child in folder.iterdir()
            if child.is_dir()
            and (
                child.name in (IMAGES_COLLECTION, FRAMES_COLLECTION)
                or child.name.startswith("faces__")
            )
        ]
        if leftovers:
            raise damaged(folder, f"it holds {', '.join(sorted(leftovers))} but no {MANIFEST}")
        return
    if manifest.model != model_id:
        raise StoreError(
            f"the index at {folder} holds faces of {manifest.model}, but the configured model "
            f"is {model_id}; use another --data-dir or the model the index was built with"
        )
    if manifest.dim != dim:
        raise damaged(folder, f"{MANIFEST} says {manifest.dim} dimensions, the model {dim}")
