"""Quotas per API key: requests per second and searches per day, each a token bucket.

A bucket holds at most ``capacity`` tokens and refills at ``rate`` tokens a second; a call
takes one, and a call that finds less than one is refused with the time until there is one.
Requests per second: capacity max(1, rps) (one second of burst), rate rps. Searches per day:
capacity the daily number, rate that number over 86,400 s (so a key that used its day waits
for tokens to drip back, rather than for midnight).

Every gateway replica keeps the buckets of every key and applies to them what every replica
takes: its own at once, the others' as it reads them (``QuotaBook.apply``; the gateway shares
usage through a Kafka topic). A bucket may so go below zero, and then refuses until refilled.
"""

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from facesearch.errors import QuotaError

DAY_S = 86_400.0


@dataclass
class TokenBucket:
    capacity: float
    rate: float  # tokens a second
    tokens: float
    at: float  # when ``tokens`` was counted

    @classmethod
    def full(cls, capacity: float, rate: float, now: float) -> "TokenBucket":
        return cls(capacity, rate, capacity, now)

    def refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def wait_s(self, now: float) -> float:
        """Seconds until the bucket holds a whole token (0: now)."""
        self.refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, count: float, now: float) -> None:
        self.refill(now)
        self.tokens -= count


@dataclass(frozen=True)
class Limits:
    """A key's quotas; 0 means none."""

    rps: float = 0.0
    searches_per_day: int = 0


NO_LIMITS = Limits()


@dataclass(frozen=True)
class Usage:
    """What one replica let a key do in one interval: calls, and Search calls among them."""

    key_id: str
    requests: int
    searches: int
    at: float  # epoch seconds, the end of the interval


class QuotaBook:
    """The buckets of every key, in one replica. ``take`` decides a call (and counts it in
    ``pending`` for the other replicas); ``apply`` adds another replica's usage."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._requests: dict[str, TokenBucket] = {}
        self._searches: dict[str, TokenBucket] = {}
        self._pending: dict[str, list[int]] = {}  # key id -> [requests, searches] not shared yet

    def take(self, key_id: str, limits: Limits, search: bool) -> None:
        """Let one call of ``key_id`` pass, or raise QuotaError (nothing taken then)."""
        with self._lock:
            now = self.clock()
            buckets = self._buckets(key_id, limits, search, now)
            for reason, bucket in buckets:
                wait = bucket.wait_s(now)
                if wait > 0:
                    raise _exhausted(key_id, limits, reason, wait)
            for _, bucket in buckets:
                bucket.take(1, now)
            pending = self._pending.setdefault(key_id, [0, 0])
            pending[0] += 1
            pending[1] += int(search)

    def apply(self, usage: Usage, limits: Limits) -> None:
        """Another replica's usage of a key (limits: the key's, as this replica knows them)."""
        with self._lock:
            now = self.clock()
            at = min(usage.at, now)
            if limits.rps > 0 and usage.requests:
                self._bucket(self._requests, usage.key_id, _rps_bucket(limits, at)).take(
                    usage.requests, at
                )
            if limits.searches_per_day > 0 and usage.searches:
                self._bucket(self._searches, usage.key_id, _day_bucket(limits, at)).take(
                    usage.searches, at
                )

    def drain(self) -> list[Usage]:
        """What this replica let pass since the last drain, per key, to share."""
        with self._lock:
            now = self.clock()
            pending, self._pending = self._pending, {}
        return [Usage(key, n[0], n[1], now) for key, n in pending.items()]

    def used(self, key_id: str, limits: Limits) -> dict[str, float]:
        """The share of each quota in use now (0 to 1, above 1 when overdrawn), for metrics."""
        with self._lock:
            now, shares = self.clock(), {}
            for name, table, make in (
                ("rps", self._requests, _rps_bucket),
                ("searches_per_day", self._searches, _day_bucket),
            ):
                if (limits.rps if name == "rps" else limits.searches_per_day) > 0:
                    bucket = self._bucket(table, key_id, make(limits, now))
                    bucket.refill(now)
                    shares[name] = 1 - bucket.tokens / bucket.capacity
            return shares

    def _buckets(
        self, key_id: str, limits: Limits, search: bool, now: float
    ) -> list[tuple[str, TokenBucket]]:
        buckets = []
        if limits.rps > 0:
            buckets.append(("rps", self._bucket(self._requests, key_id, _rps_bucket(limits, now))))
        if search and limits.searches_per_day > 0:
            day = self._bucket(self._searches, key_id, _day_bucket(limits, now))
            buckets.append(("searches_per_day", day))
        return buckets

    @staticmethod
    def _bucket(table: dict[str, TokenBucket], key_id: str, fresh: TokenBucket) -> TokenBucket:
        """The key's bucket, made full if new, and resized if the key's limits changed."""
        bucket = table.setdefault(key_id, fresh)
        if (bucket.capacity, bucket.rate) != (fresh.capacity, fresh.rate):
            bucket.capacity, bucket.rate = fresh.capacity, fresh.rate
            bucket.tokens = min(bucket.tokens, bucket.capacity)
        return bucket


def _rps_bucket(limits: Limits, now: float) -> TokenBucket:
    return TokenBucket.full(max(1.0, limits.rps), limits.rps, now)


def _day_bucket(limits: Limits, now: float) -> TokenBucket:
    return TokenBucket.full(limits.searches_per_day, limits.searches_per_day / DAY_S, now)


def _exhausted(key_id: str, limits: Limits, reason: str, wait: float) -> QuotaError:
    what = (
        f"{limits.rps:g} requests a second"
        if reason == "rps"
        else f"{limits.searches_per_day} searches a day"
    )
    shown = math.ceil(wait * 10) / 10
    return QuotaError(
        f"key {key_id} has used its quota of {what}: retry in {shown:g} s (gRPC trailing "
        "metadata retry-after-ms)",
        f"quota_{reason}",
        wait,
    )
