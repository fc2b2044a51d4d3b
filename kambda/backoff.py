"""Backoff as data: every retry and restart delay in kambda comes from a :class:`Backoff` here.

A backoff is a sequence of delays (the last one repeats) with optional jitter, or an exponential
series from a base that a setting gives (async retries: the user's base, doubled per attempt up to
a cap). Pure: the random source is passed in, so a test sees the exact delays.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    #: Delays in seconds for attempts 0, 1, 2, ...; the last one repeats.
    steps: tuple[float, ...]
    #: Each delay is scaled by a factor drawn from [1 - jitter, 1 + jitter].
    jitter: float = 0.0

    @classmethod
    def exponential(cls, base: float, cap: float, doublings: int, jitter: float = 0.0) -> Backoff:
        """base, 2 x base, 4 x base, ... up to ``doublings`` doublings, none above ``cap``."""
        return cls(tuple(min(cap, base * 2 ** n) for n in range(doublings + 1)), jitter)

    def delay(self, attempt: int, rng: random.Random | None = None, at_least: float = 0.0) -> float:
        """The delay before retry number ``attempt`` (0-based), at least ``at_least`` (a Retry-After)."""
        delay = self.steps[min(max(attempt, 0), len(self.steps) - 1)]
        if self.jitter:
            delay *= (rng or random).uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return max(delay, at_least)

    def total(self, attempts: int) -> float:
        """The delays of the first ``attempts`` retries added up, without jitter."""
        return sum(self.delay(n) for n in range(attempts))


#: Kubernetes API calls that got 429, 5xx or no connection (kopf's sequence, +-25%).
KUBE_API = Backoff((0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0), jitter=0.25)
#: A platform process that died (an invoker, or a part of `kambda up`): restarted after this long.
PROCESS_RESTART = Backoff((0.1, 0.5, 1.0, 2.0, 5.0))
#: A compare-and-set write that lost a race: retried at once, then after a short random pause.
CAS_RETRY = Backoff(tuple(0.0025 * n for n in range(1, 9)), jitter=1.0)
