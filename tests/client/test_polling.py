"""The adaptive poll schedule (pure)."""

from __future__ import annotations

import itertools
import random

import pytest

from prefect_stablestudio.client.polling import PollSchedule, TurnaroundHistory


def schedule(**kw: float) -> PollSchedule:
    return PollSchedule(rng=random.Random(7), **kw)  # type: ignore[arg-type]


def test_first_poll_comes_at_80_percent_of_the_expected_turnaround_never_before() -> None:
    for seed in range(50):
        delay = PollSchedule(expected_seconds=5, rng=random.Random(seed)).first_delay()
        assert 4.0 <= delay <= 4.4
    assert PollSchedule(expected_seconds=5, first_fraction=1.0, jitter=0.0).first_delay() == 5.0


def test_progress_predicts_the_remaining_time() -> None:
    s = schedule(jitter=0.0)
    # 50 % after 4 s: about 4 s to go.
    assert s.next_delay(elapsed=4.0, progress=50) == 4.0
    # 90 % after 9 s: 1 s to go.
    assert s.next_delay(elapsed=9.0, progress=90) == 1.0


def test_progress_estimate_is_clamped() -> None:
    s = schedule(jitter=0.0, min_interval=0.5, max_interval=15.0)
    assert s.next_delay(elapsed=5.0, progress=99.9) == 0.5
    assert s.next_delay(elapsed=20.0, progress=1) == 15.0


def test_without_progress_it_backs_off_up_to_the_cap() -> None:
    s = schedule(jitter=0.0, expected_seconds=5, max_interval=6.0)
    delays = [s.next_delay(elapsed=5.0 + i, progress=None) for i in range(8)]
    assert delays[0] == 1.5
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert delays[-1] == 6.0


def test_jitter_stays_within_bounds_and_varies() -> None:
    s = PollSchedule(jitter=0.1, rng=random.Random(3))
    delays = {round(s.next_delay(elapsed=4.0, progress=50), 6) for _ in range(20)}
    assert len(delays) > 1
    # Never before the predicted end (that poll would find the job unfinished), at most 10 % after it.
    assert all(4.0 <= d <= 4.4 for d in delays)


def test_no_delay_runs_past_the_deadline() -> None:
    s = schedule(timeout=10.0)
    assert s.next_delay(elapsed=9.5, progress=None) <= 0.5
    assert s.next_delay(elapsed=10.0, progress=10) == 0.0


def test_retry_after_is_honoured() -> None:
    s = schedule(timeout=120.0)
    assert s.retry_after_delay(elapsed=5.0, retry_after=7.0) == 7.0
    assert s.retry_after_delay(elapsed=118.0, retry_after=7.0) == 2.0


def test_a_learned_turnaround_times_the_first_poll_with_only_a_little_later_jitter() -> None:
    delays = [
        PollSchedule(expected_seconds=5, learned_seconds=3.0, rng=random.Random(seed)).first_delay()
        for seed in range(50)
    ]
    assert all(3.0 <= d <= 3.06 for d in delays) and len(set(delays)) > 1
    # Kept inside the deadline like every other delay.
    assert PollSchedule(learned_seconds=30.0, timeout=10.0).first_delay() == 10.0


def test_history_waits_for_a_few_samples_then_reads_a_low_quantile_of_the_recent_ones() -> None:
    h = TurnaroundHistory()
    for seconds in (5.0, 5.2, 5.1):
        h.add(seconds)
    assert h.estimate() is None
    h.add(4.8)
    assert h.estimate() == 4.8
    for i in range(40):  # the service slowed down: the old samples drop out of the window of 32
        h.add(6.0 + i / 100)
    assert h.estimate() == pytest.approx(6.11)  # the 10th percentile of 6.08 .. 6.39
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        h.add(bad)
    assert h.estimate() == pytest.approx(6.11)


def test_a_finished_job_adds_the_best_evidence_it_has() -> None:
    def sample(elapsed: float, **kw: object) -> float | None:
        h = TurnaroundHistory(min_samples=1)
        h.add_finished(elapsed, **kw)  # type: ignore[arg-type]
        return h.estimate()

    # The server's own duration, when plausible, beats the client's prediction...
    assert sample(5.3, server_seconds=5.0, predicted=5.2, first_poll=False) == 5.0
    # ... but not when it cannot be the job's duration (an updatedAt long after the job ended, say).
    assert sample(5.3, server_seconds=60.0, predicted=5.2) == 5.2
    # Done at the first poll, nothing else known: a bit earlier than that poll, to find a faster service.
    assert sample(4.0, first_poll=True) == pytest.approx(3.6)
    # Done at a later poll with no progress ever seen: nothing to learn.
    assert sample(9.0) is None


def test_a_poll_lost_to_the_network_is_retried_at_once_the_first_time_then_backs_off() -> None:
    s = schedule(jitter=0.0, expected_seconds=5, min_interval=0.25)
    assert s.after_network_error(elapsed=5.0) == 0.25  # a stale kept-alive connection: a new one fixes it
    assert s.after_network_error(elapsed=5.3) == 1.5  # twice in a row: the network is down, back off
    assert s.after_network_error(elapsed=6.8) == 2.25
    s.answered()
    assert s.after_network_error(elapsed=9.0) == 0.25
