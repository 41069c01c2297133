"""Erasure that sticks: a delete removes what the index holds and leaves a tombstone (its
selector and time) in the index, so that an image still in the pipeline when it came is
dropped by the search stage instead of indexed. A submission after the delete is a new consent
and is indexed. Tombstones are kept as long as an event can wait in Kafka (the longest topic
retention, ``CoreSettings.tombstone_keep``), then pruned.

``erase`` is the one delete: the search service's Delete and the embedded CLI call it.
``TombstoneCheck`` is what the search stage asks before (and again after) it writes an event.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from facesearch.records import Erasure, ImageMeta, Selector, Tombstone
from facesearch.store import FaceStore

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)  # while events flow, besides at each delete and at start
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def erase(
    store: FaceStore, selector: Selector, keep: timedelta, now: datetime | None = None
) -> Erasure:
    """Delete what ``selector`` names, leaving its tombstone, and forget tombstones older than
    ``keep`` (no event they could stop is left in Kafka)."""
    now = now or utc_now()
    store.prune_tombstones(now - keep)
    return store.delete(selector, at=now)


def tombstone_keys(image_id: str, meta: ImageMeta) -> list[tuple[str, str]]:
    """The (field, value) pairs a tombstone of an event's image may be recorded under."""
    pairs = (("image_id", image_id), ("label", meta.label), ("source_uri", meta.source_uri))
    return [(field, value) for field, value in pairs if value]


def erased_by(
    tombstones: Sequence[Tombstone], submitted_at: datetime | None, since: datetime
) -> Tombstone | None:
    """The latest tombstone recorded since ``since`` (older ones are expired, pruned or not)
    at or after the submission, else None. An event without a submission time is taken as
    submitted before any delete: dropping it errs towards the erasure."""
    covering = [
        tombstone
        for tombstone in tombstones
        if tombstone.deleted_at >= since
        and (submitted_at is None or submitted_at <= tombstone.deleted_at)
    ]
    return max(covering, key=lambda t: t.deleted_at, default=None)


@dataclass
class TombstoneCheck:
    """Whether a delete covers an event, read from the index at each call (search replicas share
    a Qdrant server, and a Delete answered by one must hold for all); prunes every
    ``PRUNE_EVERY``."""

    store: FaceStore
    keep: timedelta  # CoreSettings.tombstone_keep
    clock: Clock = utc_now
    _pruned: datetime | None = None

    def __call__(
        self, image_id: str, meta: ImageMeta, submitted_at: datetime | None
    ) -> Tombstone | None:
        now = self.clock()
        if self._pruned is None or now - self._pruned >= PRUNE_EVERY:
            self.prune(now)
        found = self.store.tombstones(tombstone_keys(image_id, meta))
        return erased_by(found, submitted_at, now - self.keep)

    def prune(self, now: datetime | None = None) -> int:
        now = now or self.clock()
        pruned = self.store.prune_tombstones(now - self.keep)
        self._pruned = now
        if pruned:
            log.info("forgot %d tombstones recorded before %s", pruned, now - self.keep)
        return pruned
