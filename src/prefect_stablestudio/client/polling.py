"""When to poll a job next: the pure schedule behind `wait_for_job`.

First poll a little before the expected turnaround: at 80 % of it, or, once a client has seen a few jobs
finish, at the short end of the turnarounds it saw (`TurnaroundHistory`). A job still loading then reports
progress p after t seconds, and the next poll comes when it should be done (t * (100 - p) / p), never
earlier; a job without progress gets a growing back-off. Every delay is clamped, jittered and kept inside
the deadline.

Why not first poll at the expected time: turnarounds spread (+-20 % around 5 s), so a poll at 5 s finds half
the jobs finished up to a second earlier. Polling at 4 s and then at the predicted end costs about one more
request per job (about 2 in all, SIWX included) and cuts the mean delay between "done" and "seen done" from
~0.5 s to ~0.1 s (bench/: requests per job and batch wall time). When the service is steadier than that,
the learned first poll finds most jobs done: about one poll per job instead of two, ~1 ms of CPU per edit
in a batch (bench/).

Example:
    >>> import random
    >>> from prefect_stablestudio.client.polling import PollSchedule
    >>> s = PollSchedule(expected_seconds=5, timeout=120, rng=random.Random(1))
    >>> 4.0 <= s.first_delay() <= 4.4
    True
    >>> 1.0 <= s.next_delay(elapsed=4.0, progress=80) <= 1.1
    True
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

__all__ = ["PollSchedule", "TurnaroundHistory"]


@dataclass
class PollSchedule:
    """An adaptive poll schedule for one job. Not thread-safe; make one per wait.

    Attributes:
        expected_seconds: the typical turnaround (Flux 2 Pro edit: about 5 s).
        timeout: the overall deadline in seconds.
        first_fraction: the first poll comes after this share of `expected_seconds` (plus jitter).
        min_interval: never poll faster than this.
        max_interval: never wait longer than this between polls.
        jitter: relative jitter (0.1 = +-10 %), so many clients do not poll in lockstep.
        learned_seconds: when known, the short end of recent turnarounds (`TurnaroundHistory.estimate`);
            the first poll then comes at it instead of at `first_fraction` of `expected_seconds`.
        learned_jitter: the (smaller) jitter of a learned first poll: every bit of it is added latency.
    """

    expected_seconds: float = 5.0
    timeout: float = 120.0
    first_fraction: float = 0.8
    min_interval: float = 0.25
    max_interval: float = 15.0
    jitter: float = 0.1
    learned_seconds: float | None = None
    learned_jitter: float = 0.02
    rng: random.Random = field(default_factory=random.Random)
    _backoff: float = field(default=0.0, init=False)
    _network_errors: int = field(default=0, init=False)

    def first_delay(self) -> float:
        """First poll's delay: the learned turnaround, else 80 % of the expected; jitter only later."""
        if self.learned_seconds is not None:
            delay = self.learned_seconds * (1.0 + self.learned_jitter * self.rng.random())
        else:
            delay = self.expected_seconds * self.first_fraction * (1.0 + self.jitter * self.rng.random())
        return self._bounded(max(delay, 0.0), elapsed=0.0)

    def next_delay(self, *, elapsed: float, progress: float | None) -> float:
        """Delay before the next poll, from the time since submission and the last progress (0..100)."""
        if progress is not None and 0 < progress < 100:
            remaining = elapsed * (100.0 - progress) / progress
            # Jitter only later: a poll before the predicted end would just cost one more request.
            bounded = min(max(remaining, self.min_interval), self.max_interval)
            delay = bounded * (1.0 + self.jitter * self.rng.random())
        else:
            self._backoff = (
                max(self.min_interval, 0.3 * self.expected_seconds)
                if self._backoff == 0
                else self._backoff * 1.5
            )
            delay = self._jittered(min(self._backoff, self.max_interval))
        return self._bounded(delay, elapsed=elapsed)

    def after_network_error(self, *, elapsed: float) -> float:
        """Delay after a poll lost to the network: the first of a run at once (`min_interval`), then backoff.

        The usual cause is a kept-alive connection the server closed as the poll went out (servers close
        idle ones after ~5 s, a job's turnaround), which one new connection fixes; waiting out the backoff
        there added ~1.5 s to the edit (bench/: the slowest edit of a batch).
        """
        self._network_errors += 1
        if self._network_errors == 1:
            return self._bounded(self.min_interval, elapsed=elapsed)
        return self.next_delay(elapsed=elapsed, progress=None)

    def answered(self) -> None:
        """A poll got an answer: the next network error is the first of a new run."""
        self._network_errors = 0

    def retry_after_delay(self, *, elapsed: float, retry_after: float | None) -> float:
        """Delay after a 429/503: the server's Retry-After when given, else the backoff."""
        if retry_after is None:
            return self.next_delay(elapsed=elapsed, progress=None)
        return self._bounded(max(retry_after, self.min_interval), elapsed=elapsed)

    def _jittered(self, delay: float) -> float:
        return max(self.min_interval, delay * (1.0 + self.jitter * (2.0 * self.rng.random() - 1.0)))

    def _bounded(self, delay: float, *, elapsed: float) -> float:
        return max(0.0, min(delay, self.timeout - elapsed))


@dataclass
class TurnaroundHistory:
    """The turnarounds of a client's recent jobs, to time the first poll of the next. Pure; one per client.

    Each finished job adds one sample, the best one known: the server's own duration (`updatedAt - createdAt`)
    when it sends both, else the end the job's progress predicted, else (done at the first poll, nothing else
    known) 90 % of the time of that poll, so that a service that got faster is found out. `estimate()` is a
    low quantile of the last `size` samples, so that only the fastest jobs pay a second poll.

    Example:
        >>> h = TurnaroundHistory()
        >>> h.estimate() is None
        True
        >>> for seconds in (5.2, 4.9, 5.0, 5.1):
        ...     h.add(seconds)
        >>> h.estimate()
        4.9
    """

    size: int = 32
    quantile: float = 0.1
    min_samples: int = 4
    _samples: deque[float] = field(default_factory=deque, init=False, repr=False)

    def add(self, seconds: float) -> None:
        """Record one job's turnaround in seconds (ignored unless positive and finite)."""
        if 0.0 < seconds < float("inf"):
            self._samples.append(seconds)
            if len(self._samples) > self.size:
                self._samples.popleft()

    def add_finished(
        self,
        elapsed: float,
        *,
        server_seconds: float | None = None,
        predicted: float | None = None,
        first_poll: bool = False,
        slack: float = 1.0,
    ) -> None:
        """Record a job seen complete `elapsed` seconds after its wait began, from the best evidence there is.

        Args:
            elapsed: seconds from the start of the wait to the poll that saw the job complete.
            server_seconds: the server's creation-to-update time, trusted only up to `elapsed + slack` (the
                job was created before its submit returned: the server may count a little longer, not much).
            predicted: the end the last progress report predicted.
            first_poll: True when the first poll already found the job complete.
        """
        if server_seconds is not None and 0.0 < server_seconds <= elapsed + slack:
            self.add(server_seconds)
        elif predicted is not None:
            self.add(predicted)
        elif first_poll:
            self.add(0.9 * elapsed)

    def estimate(self) -> float | None:
        """The `quantile` of recent turnarounds, or None before `min_samples` jobs finished."""
        if len(self._samples) < self.min_samples:
            return None
        ordered = sorted(self._samples)
        return ordered[int(self.quantile * len(ordered))]
