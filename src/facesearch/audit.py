"""The audit trail: one record for every call of a public method, refused ones included, as
CloudTrail keeps for Rekognition. A record says who (the key's id, never the key), what (the
method, the collection), when, how it ended, and what a search was about without keeping it:
the number of query faces and a hash of each one's embedding (never the image), the number of
results and their decisions.

Where records go: the gateway produces them to the Kafka topic ``facesearch.audit.v1``; the
embedded CLI appends them to ``<data dir>/audit.jsonl``. ``facesearch audit`` reads either.
"""

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from facesearch.errors import BadMessageError, FaceSearchError

AUDIT_FILE = "audit.jsonl"
OWNER = "owner"  # the key id of the embedded CLI's records: the data folder's own user


@dataclass
class AuditRecord:
    """One call. ``status`` is the gRPC status name (OK, UNAUTHENTICATED, ...); ``reason`` the
    refusal's or error's short code (no_key, scope, bad_image, ...), empty when OK."""

    time: str  # ISO 8601, UTC, milliseconds: when the call began
    method: str  # IndexImages, GetImage, Search, Compare, Delete, Stats, OptOut, ...OptOuts
    key_id: str = ""  # empty: no valid key was presented (or keys are off)
    status: str = "OK"
    reason: str = ""
    collection: str = ""  # asked for; empty: every collection (or none involved)
    images: int = 0  # IndexImages: images sent in the call
    query_faces: int = 0  # Search, Compare: faces found in the query image(s)
    face_hashes: list[str] = field(default_factory=list)  # embedding_hash of each
    results: int = 0  # Search: matches returned; Delete: faces deleted; IndexImages: queued
    decisions: dict[str, int] = field(default_factory=dict)  # Search: matches by decision
    source: str = ""  # who wrote it: gateway/<host> or cli
    peer: str = ""  # the client's address, as gRPC gives it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> "AuditRecord":
        if not isinstance(data, dict) or not isinstance(data.get("method"), str):
            raise BadMessageError("an audit record is a JSON object with a method")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def when(self) -> datetime:
        return datetime.fromisoformat(self.time)

    def count_decisions(self, decisions: Iterable[str]) -> None:
        self.decisions = dict(Counter(decisions))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def embedding_hash(vector: Any) -> str:
    """The sha256 of an embedding as little-endian float32 (hex): the same face vector always
    gives the same hash, and the hash gives back neither the vector nor the face."""
    data = np.ascontiguousarray(np.asarray(vector, dtype="<f4")).tobytes()
    return hashlib.sha256(data).hexdigest()


@contextmanager
def audited(sink: Callable[[AuditRecord], None], method: str) -> Iterator[AuditRecord]:
    """The record of one call in this process (the embedded CLI's): filled in by the caller,
    ended with the call's outcome (status ERROR and the error's code when it raised), and
    handed to ``sink`` in every case."""
    record = AuditRecord(now(), method, key_id=OWNER, source="cli")
    try:
        yield record
    except BaseException as exc:
        record.status = "ERROR"
        record.reason = exc.code if isinstance(exc, FaceSearchError) else type(exc).__name__
        raise
    finally:
        sink(record)


class AuditFile:
    """The embedded CLI's records: JSON lines, appended (one write each, O_APPEND, so two
    commands at once do not mix their lines)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: AuditRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record.to_json(), sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read(self) -> Iterator[AuditRecord]:
        """Every record, oldest first (none for a file not made yet). A line that is not a
        record (a torn last line after a crash) is skipped."""
        try:
            handle = self.path.open(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                try:
                    yield AuditRecord.from_json(json.loads(line))
                except (ValueError, TypeError, BadMessageError):
                    continue


@dataclass(frozen=True)
class AuditQuery:
    """Which records ``facesearch audit`` shows."""

    since: datetime | None = None
    key_id: str = ""  # "-": the calls without a valid key
    method: str = ""

    def wants(self, record: AuditRecord) -> bool:
        if self.key_id and record.key_id != ("" if self.key_id == "-" else self.key_id):
            return False
        if self.method and record.method.lower() != self.method.lower():
            return False
        return self.since is None or record.when() >= self.since
