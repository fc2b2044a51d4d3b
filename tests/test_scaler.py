"""The autoscaler's decisions, driven by a fake clock: no sleeping, no servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controller.decider import Decider, ScalerConfig, WindowAverage, WindowMax, shares
from controller.scaler import Autoscaler, Key
from kambda.settings import SettingsError

KEY: Key = ("fn", "$LATEST")
CONFIG = ScalerConfig(scale_to_zero_after=300, stable_window=60, panic_window=6, panic_threshold=2.0)


def drive(decider: Decider, load: list[tuple[float, int]], ready: int) -> tuple[int, int, bool]:
    """Feed (time, concurrency) samples, each followed by a decision, as the runner does."""
    result = None
    for now, concurrency in load:
        decider.record(now, concurrency)
        result = decider.scale(now, ready)
        ready = result.desired
    assert result is not None
    return result.desired, ready, result.panic


def test_window_max_forgets_old_values() -> None:
    window = WindowMax(10)
    window.record(0, 5)
    window.record(1, 2)
    window.record(2, 3)
    assert window.max(5) == 5
    assert window.max(10.5) == 3
    assert window.max(12.5) == 0


def test_window_average_is_time_weighted() -> None:
    window = WindowAverage(10)
    window.record(0, 4)
    window.record(5, 0)
    assert window.average(10) == pytest.approx(2.0)  # 4 for 5 s, 0 for 5 s
    assert window.average(15) == pytest.approx(0.0)
    fresh = WindowAverage(10)
    fresh.record(8, 10)
    assert fresh.average(10) == pytest.approx(2.0)  # time before the first sample counts as zero


def test_steady_load() -> None:
    decider = Decider(CONFIG, cap=100)
    desired, _, panic = drive(decider, [(t, 3) for t in range(0, 200)], ready=0)
    assert desired == 3 and not panic


def test_burst_panics_and_scales_at_once() -> None:
    decider = Decider(CONFIG, cap=100)
    _, ready, _ = drive(decider, [(t, 1) for t in range(0, 120)], ready=0)
    assert ready == 1
    desired, ready, panic = drive(decider, [(120.5, 10)], ready=ready)
    assert panic and desired == 10


def test_no_scale_down_while_panicking_then_down_and_to_zero() -> None:
    config = ScalerConfig(scale_to_zero_after=120, stable_window=60, panic_window=6)
    decider = Decider(config, cap=100)
    drive(decider, [(t, 1) for t in range(0, 120)], ready=0)
    _, ready, _ = drive(decider, [(120, 10)], ready=1)
    desired, ready, panic = drive(decider, [(121 + t, 0) for t in range(0, 50)], ready=ready)
    assert panic and desired == 10  # the burst is over, but panic holds the scale
    desired, ready, panic = drive(decider, [(171 + t, 0) for t in range(0, 30)], ready=ready)
    assert not panic and desired == 10  # out of panic; the scale-down delay still holds the peak
    desired, ready, _ = drive(decider, [(201 + t, 0) for t in range(0, 42)], ready=ready)
    assert desired == 0  # 120 s after the last request ended (t=121): scaled to zero


def test_idle_for_scale_to_zero_after_scales_to_zero_and_not_before() -> None:
    decider = Decider(ScalerConfig(scale_to_zero_after=300), cap=10)
    drive(decider, [(t, 1) for t in range(0, 10)], ready=0)
    desired, ready, _ = drive(decider, [(10 + t, 0) for t in range(0, 295)], ready=1)
    assert desired == 1
    desired, _, _ = drive(decider, [(305 + t, 0) for t in range(0, 10)], ready=ready)
    assert desired == 0


def test_provisioned_floor_and_reserved_ceiling() -> None:
    floored = Decider(CONFIG, cap=10, floor=3)
    assert drive(floored, [(t, 0) for t in range(0, 1000, 10)], ready=0)[0] == 3
    capped = Decider(CONFIG, cap=2)
    assert drive(capped, [(t, 10) for t in range(0, 100)], ready=0)[0] == 2


def test_max_scale_up_rate() -> None:
    decider = Decider(ScalerConfig(max_scale_up_rate=2.0), cap=100)
    decider.record(0, 1)
    assert decider.scale(0, ready=1).desired == 1
    decider.record(1, 50)
    assert decider.scale(1, ready=1).desired == 2
    decider.record(2, 50)
    assert decider.scale(2, ready=2).desired == 4


def test_config_errors_name_key_value_and_range() -> None:
    with pytest.raises(SettingsError, match=r"panic_threshold=0.5 is out of range \(expected 1.0..1000.0\)"):
        ScalerConfig(panic_threshold=0.5)


class Fake:
    def __init__(self) -> None:
        self.concurrency = 0
        self.applied: list[tuple[Key, int]] = []

    async def observe(self, key: Key) -> int:
        return self.concurrency

    async def apply(self, key: Key, desired: int) -> None:
        self.applied.append((key, desired))


async def test_activation_scales_up_at_once_and_ticks_scale_down() -> None:
    fake = Fake()
    config = ScalerConfig(scale_to_zero_after=30, stable_window=10, linger=5)
    scaler = Autoscaler(config, fake.observe, fake.apply, lambda k: 10)
    assert await scaler.activate(KEY, now=0, in_flight=3) == 3
    assert fake.applied == [(KEY, 3)]
    fake.concurrency = 0
    await scaler.tick(20)
    assert scaler.desired(KEY) == 3  # within scale_to_zero_after of the peak
    await scaler.tick(45)
    assert scaler.desired(KEY) == 0
    assert fake.applied[-1] == (KEY, 0)
    assert KEY in scaler.active_keys()  # lingers to catch a request that raced the scale-down
    await scaler.tick(51)
    assert KEY not in scaler.active_keys()
    applied = len(fake.applied)
    await scaler.tick(100)  # idle versions cost nothing per tick
    assert len(fake.applied) == applied


async def test_a_failed_observation_keeps_the_scale() -> None:
    fake = Fake()

    async def broken(key: Key) -> int:
        raise ConnectionError("nats is away")

    scaler = Autoscaler(ScalerConfig(scale_to_zero_after=1), broken, fake.apply, lambda k: 10)
    assert await scaler.activate(KEY, now=0, in_flight=2) == 2
    await scaler.tick(100)
    assert scaler.desired(KEY) == 2


async def test_runner_consumes_injected_ticks() -> None:
    fake = Fake()
    scaler = Autoscaler(ScalerConfig(scale_to_zero_after=5, linger=0), fake.observe, fake.apply, lambda k: 10)
    await scaler.activate(KEY, now=0, in_flight=1)

    async def ticks() -> AsyncIterator[float]:
        for t in (1.0, 6.0, 7.0):
            yield t

    await scaler.run(ticks())
    assert fake.applied == [(KEY, 1), (KEY, 0)]
    assert not scaler.active_keys()


async def test_provisioned_floor_activates_a_version_by_itself() -> None:
    fake = Fake()
    scaler = Autoscaler(ScalerConfig(), fake.observe, fake.apply, lambda k: 10, lambda k: 3)
    await scaler.reapply(KEY, now=0)
    assert fake.applied == [(KEY, 3)] and scaler.desired(KEY) == 3
    await scaler.tick(10_000)
    assert scaler.desired(KEY) == 3 and KEY in scaler.active_keys()


async def test_forget_scales_a_deleted_function_to_zero() -> None:
    fake = Fake()
    reports: list[tuple[Key, int]] = []

    async def report(key: Key, result) -> None:  # type: ignore[no-untyped-def]
        reports.append((key, result.desired))

    scaler = Autoscaler(ScalerConfig(), fake.observe, fake.apply, lambda k: 10, report=report)
    await scaler.activate(KEY, now=0, in_flight=2)
    await scaler.forget(KEY)
    assert fake.applied[-1] == (KEY, 0) and not scaler.active_keys()
    assert reports[-1] == (KEY, 0)  # the gateways hear of it too (their gauges, their capacity)


async def test_platform_limit_is_shared_and_every_decision_is_reported() -> None:
    fake = Fake()
    reports: list[tuple[Key, int, bool]] = []

    async def report(key: Key, result) -> None:  # type: ignore[no-untyped-def]
        reports.append((key, result.desired, result.panic))

    scaler = Autoscaler(ScalerConfig(), fake.observe, fake.apply, lambda k: 10, report=report, total_limit=5)
    other: Key = ("other", "$LATEST")
    assert await scaler.activate(KEY, now=0, in_flight=3) == 3
    assert await scaler.activate(other, now=0, in_flight=4) == 2  # only 2 of the 5 are left
    assert reports == [(KEY, 3, True), (other, 2, True)]


def test_shares_give_all_when_it_fits_and_split_in_proportion_when_not() -> None:
    assert shares(10, {"a": 3, "b": 4}) == {"a": 3, "b": 4}
    assert shares(4, {"a": 8, "b": 4}) == {"a": 3, "b": 1}
    assert shares(10, {"a": 90, "b": 10, "c": 0}) == {"a": 9, "b": 1, "c": 0}
    assert shares(4, {"a": 100, "b": 1}) == {"a": 3, "b": 1}  # a canary is never starved
    assert shares(2, {"a": 5, "b": 5, "c": 5}) == {"a": 1, "b": 1, "c": 0}  # fewer than claimants
    for limit in range(0, 12):
        for wants in ({"a": 7, "b": 3, "c": 1}, {"a": 1, "b": 1}, {"a": 20}):
            got = shares(limit, wants)
            assert sum(got.values()) == min(limit, sum(wants.values()))
            assert all(0 <= got[k] <= wants[k] for k in wants)


async def test_reserved_concurrency_is_shared_by_every_version_of_a_function() -> None:
    """AWS applies reserved concurrency to the function, not to each version: two versions under
    load hold no more than it together, split by demand, and neither is starved."""
    held: dict[Key, int] = {}
    demand: dict[Key, int] = {}
    worst = 0

    async def observe(key: Key) -> int:
        return demand.get(key, 0)

    async def apply(key: Key, desired: int) -> None:
        nonlocal worst
        held[key] = desired
        worst = max(worst, held.get(V1, 0) + held.get(V2, 0))

    V1, V2, OTHER = ("fn", "1"), ("fn", "2"), ("other", "$LATEST")
    running: dict[Key, int] = {}  # environments still finishing a request after a scale-down
    scaler = Autoscaler(ScalerConfig(scale_to_zero_after=10, stable_window=5, panic_window=1), observe, apply,
                        lambda k: 10, shared_cap_of=lambda function: 4 if function == "fn" else None,
                        running_of=lambda key: running.get(key, 0))
    demand[V1], demand[V2] = 8, 4
    assert await scaler.activate(V1, now=0, in_flight=8) == 4  # alone, it may use all of it
    assert await scaler.activate(V2, now=0, in_flight=4) == 0  # nothing left until V1 gives back
    assert await scaler.activate(OTHER, now=0, in_flight=6) == 6  # another function is not limited
    running[V1] = 4
    await scaler.tick(1)
    assert (scaler.desired(V1), scaler.desired(V2)) == (3, 0)  # V1's fourth still finishes its request
    running[V1] = 3
    for now in (2, 3):
        await scaler.tick(now)
    assert (scaler.desired(V1), scaler.desired(V2)) == (3, 1)  # 8:4 of 4, by largest remainder
    assert worst == 4  # never more than the reserved concurrency at any moment
    demand[V1], running[V1] = 0, 0  # V1 idles: once its environments stop, V2 may have them all
    for now in range(4, 30):
        await scaler.tick(now)
    assert (scaler.desired(V1), scaler.desired(V2)) == (0, 4) and worst == 4
