"""kambda/backoff.py: the delays every retry and restart uses."""

from __future__ import annotations

import random

from kambda.backoff import CAS_RETRY, KUBE_API, PROCESS_RESTART, Backoff


def test_sequence_with_jitter_honours_retry_after() -> None:
    rng = random.Random(1)
    delays = [KUBE_API.delay(i, rng) for i in range(len(KUBE_API.steps) + 2)]
    for i, delay in enumerate(delays):
        base = KUBE_API.steps[min(i, len(KUBE_API.steps) - 1)]
        assert 0.75 * base <= delay <= 1.25 * base
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not a fixed sequence
    assert KUBE_API.delay(0, rng, at_least=4.0) == 4.0


def test_without_jitter_the_last_step_repeats() -> None:
    assert [PROCESS_RESTART.delay(n) for n in range(7)] == [0.1, 0.5, 1.0, 2.0, 5.0, 5.0, 5.0]
    assert PROCESS_RESTART.delay(-1) == 0.1
    assert PROCESS_RESTART.total(3) == 1.6


def test_exponential_doubles_up_to_its_cap() -> None:
    retries = Backoff.exponential(60.0, 3600.0, 12)
    assert [retries.delay(n) for n in range(8)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert Backoff.exponential(0.5, 60.0, 6).delay(100) == 32.0  # capped by its doublings first


def test_cas_retry_pauses_grow_and_stay_random() -> None:
    rng = random.Random(7)
    for attempt in range(8):
        assert 0.0 <= CAS_RETRY.delay(attempt, rng) <= 0.005 * (attempt + 1)
