"""Quotas per key (facesearch.quotas): token buckets for requests a second and searches a day,
refusals saying when to retry, and usage from other replicas counted against the same
buckets."""

import pytest

from facesearch.errors import QuotaError
from facesearch.quotas import DAY_S, Limits, QuotaBook, Usage


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_requests_a_second_allow_one_seconds_burst_then_say_when_to_retry(clock: Clock) -> None:
    book, limits = QuotaBook(clock), Limits(rps=2)
    book.take("k", limits, search=False)
    book.take("k", limits, search=False)
    with pytest.raises(QuotaError, match=r"quota of 2 requests a second: retry in 0\.5 s") as hit:
        book.take("k", limits, search=False)
    assert hit.value.reason == "quota_rps" and hit.value.retry_after_s == pytest.approx(0.5)
    clock.now += 0.5
    book.take("k", limits, search=False)  # one token dripped back
    book.take("other", limits, search=False)  # each key its own buckets


def test_searches_a_day_count_only_searches_and_refill_steadily(clock: Clock) -> None:
    book, limits = QuotaBook(clock), Limits(searches_per_day=2)
    for _ in range(5):
        book.take("k", limits, search=False)  # not searches: no limit on them
    book.take("k", limits, search=True)
    book.take("k", limits, search=True)
    with pytest.raises(QuotaError, match="quota of 2 searches a day") as hit:
        book.take("k", limits, search=True)
    assert hit.value.retry_after_s == pytest.approx(DAY_S / 2)
    clock.now += DAY_S / 2
    book.take("k", limits, search=True)


def test_a_refused_call_takes_nothing(clock: Clock) -> None:
    book, limits = QuotaBook(clock), Limits(rps=1, searches_per_day=10)
    book.take("k", limits, search=True)
    with pytest.raises(QuotaError):
        book.take("k", limits, search=True)
    assert book.used("k", limits)["searches_per_day"] == pytest.approx(0.1, abs=1e-3)
    assert [(u.requests, u.searches) for u in book.drain()] == [(1, 1)]
    assert book.drain() == []


def test_usage_from_other_replicas_counts_against_the_same_buckets(clock: Clock) -> None:
    mine, theirs = QuotaBook(clock), QuotaBook(clock)
    limits = Limits(searches_per_day=3)
    theirs.take("k", limits, search=True)
    theirs.take("k", limits, search=True)
    for usage in theirs.drain():
        mine.apply(usage, limits)
    mine.take("k", limits, search=True)
    with pytest.raises(QuotaError):
        mine.take("k", limits, search=True)
    # Overdrawn (both let calls pass before hearing of the other's): refused until refilled.
    mine.apply(Usage("k", 2, 2, clock.now), limits)
    assert mine.used("k", limits)["searches_per_day"] > 1
    with pytest.raises(QuotaError) as hit:
        mine.take("k", limits, search=True)
    assert hit.value.retry_after_s == pytest.approx(3 * DAY_S / 3)


def test_no_limits_take_nothing(clock: Clock) -> None:
    book = QuotaBook(clock)
    for _ in range(1000):
        book.take("k", Limits(), search=True)
    assert book.used("k", Limits()) == {}
