"""The adaptive poll schedule (pure)."""

from __future__ import annotations

import itertools
import random

from stablestudio.polling import PollSchedule


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
