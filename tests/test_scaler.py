"""The autoscaler's decisions, driven by a fake clock: no sleeping, no servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

from controller.scaler import Autoscaler, Decider, Key, ScalerConfig, WindowMax

KEY: Key = ("fn", "$LATEST")


def test_window_max_forgets_old_observations() -> None:
    window = WindowMax(10)
    window.record(0, 5)
    window.record(1, 2)
    window.record(2, 3)
    assert window.max(5) == 5
    assert window.max(10.5) == 3  # the 5 at t=0 left the window
    assert window.max(12.5) == 0


def test_decider_keeps_peak_concurrency_for_the_idle_window_then_zero() -> None:
    decider = Decider(ScalerConfig(scale_to_zero_after=60), cap=10)
    decider.record(0, 4)
    for t in range(1, 60):
        decider.record(t, 1)
    assert decider.scale(59).desired == 4
    assert decider.scale(61).desired == 1
    decider.record(61, 0)
    assert decider.scale(125).desired == 0


def test_decider_is_capped() -> None:
    decider = Decider(ScalerConfig(), cap=3)
    decider.record(0, 50)
    result = decider.scale(0)
    assert result.desired == 3 and result.observed_max == 50


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
    scaler = Autoscaler(ScalerConfig(scale_to_zero_after=30, linger=5), fake.observe, fake.apply, lambda k: 10)
    assert await scaler.activate(KEY, now=0, in_flight=3) == 3
    assert fake.applied == [(KEY, 3)]
    fake.concurrency = 1
    await scaler.tick(10)
    assert scaler.desired(KEY) == 3  # the peak is still within the window
    await scaler.tick(31)
    assert scaler.desired(KEY) == 1
    fake.concurrency = 0
    await scaler.tick(45)
    assert scaler.desired(KEY) == 1  # the 1 seen at t=31 is still within the window
    await scaler.tick(62)
    assert scaler.desired(KEY) == 0
    assert fake.applied[-1] == (KEY, 0)
    assert KEY in scaler.active_keys()  # lingers to catch a request that raced the scale-down
    await scaler.tick(68)
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


async def test_forget_scales_a_deleted_function_to_zero() -> None:
    fake = Fake()
    scaler = Autoscaler(ScalerConfig(), fake.observe, fake.apply, lambda k: 10)
    await scaler.activate(KEY, now=0, in_flight=2)
    await scaler.forget(KEY)
    assert fake.applied[-1] == (KEY, 0) and not scaler.active_keys()
