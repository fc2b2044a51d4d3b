"""Retry and Catch: which retrier or catcher handles an error, and the delay before the next attempt.

As AWS documents: retriers are scanned in order and the *first* whose ErrorEquals matches decides (an exhausted
one fails the state, later retriers are not consulted); each retrier counts its own attempts across the state's
execution; ``States.ALL`` matches everything but ``States.Runtime`` and ``States.DataLimitExceeded`` (terminal);
``States.TaskFailed`` matches everything but ``States.Timeout`` (and those two terminal errors).
"""

from __future__ import annotations

import random

from workflows.language.errors import ALL, DATA_LIMIT, RUNTIME, TASK_FAILED, TIMEOUT
from workflows.language.model import Catcher, Retrier

_TERMINAL = frozenset([RUNTIME, DATA_LIMIT])


def error_matches(error_equals: list[str], error: str) -> bool:
    """Whether an ErrorEquals list matches ``error`` (see the module docstring for the wildcards)."""
    if error in error_equals:
        return True
    if error in _TERMINAL:
        return False
    if ALL in error_equals:
        return True
    return TASK_FAILED in error_equals and error != TIMEOUT


def matching_retrier(retriers: list[Retrier], error: str) -> int | None:
    for i, retrier in enumerate(retriers):
        if error_matches(retrier.error_equals, error):
            return i
    return None


def delay(retrier: Retrier, attempts: int, rng: random.Random) -> float:
    """Seconds before retry number ``attempts + 1``: IntervalSeconds x BackoffRate^attempts, capped by
    MaxDelaySeconds, drawn uniformly from [0, that) with JitterStrategy FULL."""
    seconds = retrier.interval_seconds * retrier.backoff_rate**attempts
    if retrier.max_delay_seconds is not None:
        seconds = min(seconds, float(retrier.max_delay_seconds))
    if retrier.jitter_strategy == "FULL":
        seconds = rng.uniform(0, seconds)
    return float(seconds)


def retry_delay(
    retriers: list[Retrier], error: str, attempts: list[int], rng: random.Random
) -> tuple[int, float] | None:
    index = matching_retrier(retriers, error)
    if index is None:
        return None
    retrier = retriers[index]
    done = attempts[index] if index < len(attempts) else 0
    if done >= retrier.max_attempts:
        return None
    return index, delay(retrier, done, rng)


def matching_catcher(catchers: list[Catcher], error: str) -> Catcher | None:
    for catcher in catchers:
        if error_matches(catcher.error_equals, error):
            return catcher
    return None
