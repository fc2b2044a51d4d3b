"""The autoscaler's runner: feeds each active version's decider and applies its answers.

In Knative's shape (STYLE.md): the decider (decider.py) is pure; this runner collects what it
needs and acts on injected ticks. No code here reads a clock of its own.

Observed concurrency of a function version = requests running (the consumer's ack-pending count)
+ requests waiting (its pending count), sampled on every tick for *active* versions only, and
reported by the gateway's Activate nudge. Idle versions cost nothing per tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from controller.decider import Decider, ScalerConfig, ScaleResult, shares

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (function name, version)


@dataclass
class _Active:
    decider: Decider
    desired: int = 0
    last: ScaleResult | None = None
    zero_since: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


Observe = Callable[[Key], Awaitable[int]]
Apply = Callable[[Key, int], Awaitable[None]]
Report = Callable[[Key, ScaleResult], Awaitable[None]]


async def _no_report(key: Key, result: ScaleResult) -> None:
    return None


class Autoscaler:
    """Runs the deciders of the active function versions and applies their answers.

    ``observe(key)`` returns the current concurrency of a version (running + queued);
    ``apply(key, desired)`` makes the orchestrator hold that many environments; ``cap_of(key)``
    bounds one version; ``shared_cap_of(function)`` bounds all versions of a function together
    (its reserved concurrency, None when it has none), as AWS applies reserved concurrency;
    ``running_of(key)`` is how many environments of a version still run (one told to stop finishes
    its request first), so that what one version gives back is not handed to another too soon.
    """

    def __init__(self, config: ScalerConfig, observe: Observe, apply: Apply,
                 cap_of: Callable[[Key], int], floor_of: Callable[[Key], int] = lambda key: 0,
                 report: Report = _no_report, total_limit: int = 1_000_000,
                 shared_cap_of: Callable[[str], int | None] = lambda function: None,
                 running_of: Callable[[Key], int] = lambda key: 0) -> None:
        self.config = config
        self._observe = observe
        self._apply = apply
        self._cap_of = cap_of
        self._shared_cap_of = shared_cap_of
        self._running_of = running_of
        self._floor_of = floor_of
        self._report = report
        #: The platform-wide limit on environments, shared by every function.
        self.total_limit = total_limit
        self._active: dict[Key, _Active] = {}

    def desired(self, key: Key) -> int:
        state = self._active.get(key)
        return state.desired if state else 0

    def active_keys(self) -> list[Key]:
        return list(self._active)

    def last_result(self, key: Key) -> ScaleResult | None:
        state = self._active.get(key)
        return state.last if state else None

    async def activate(self, key: Key, now: float, in_flight: int) -> int:
        """The gateway's nudge: ``in_flight`` requests wait on ``key``. Scales up at once."""
        state = self._state(key)
        async with state.lock:
            observed = await self._safe_observe(key)
            state.decider.record(now, max(1, in_flight, observed or 0))
            await self._decide(key, state, now)
            return state.desired

    async def tick(self, now: float) -> None:
        """One pass over the active versions (idle ones are not in the active set)."""
        await asyncio.gather(*(self._tick_one(key, now) for key in list(self._active)))

    async def _tick_one(self, key: Key, now: float) -> None:
        state = self._active.get(key)
        if state is None:
            return
        async with state.lock:
            observed = await self._safe_observe(key)
            if observed is None:
                return  # no observation is not an observation of zero: keep the scale
            state.decider.record(now, observed)
            await self._decide(key, state, now)
            if state.desired == 0:
                if state.zero_since is None:
                    state.zero_since = now
                elif now - state.zero_since >= self.config.linger:
                    self._active.pop(key, None)
            else:
                state.zero_since = None

    async def forget(self, key: Key) -> None:
        """The version is gone (deleted): scale it to zero and stop watching it."""
        state = self._active.pop(key, None)
        if state is not None and state.desired:
            async with state.lock:
                await self._apply(key, 0)
                await self._report(key, ScaleResult(desired=0, panic=False, stable_average=0.0, panic_average=0.0))

    async def reapply(self, key: Key, now: float) -> None:
        """The version's configuration changed: hand the orchestrator the new one, re-deciding the
        scale (its cap or floor may have changed too)."""
        state = self._active.get(key)
        if state is None and self._floor_of(key) > 0:
            state = self._state(key)  # provisioned concurrency makes a version active by itself
        if state is not None:
            async with state.lock:
                before = state.desired
                await self._decide(key, state, now)
                if state.desired == before and state.desired:
                    await self._apply(key, state.desired)

    async def run(self, ticks: AsyncIterator[float]) -> None:
        async for now in ticks:
            try:
                await self.tick(now)
            except Exception:  # one bad tick must not end autoscaling
                log.exception("autoscaler tick failed")

    def _state(self, key: Key) -> _Active:
        state = self._active.get(key)
        if state is None:
            state = _Active(Decider(self.config, self._cap_of(key)))
            self._active[key] = state
        return state

    def _share(self, key: Key, state: _Active, limit: int) -> int:
        """How many environments ``key`` may hold of its function's ``limit``: the room its other
        versions leave, and under contention no more than its proportional share (a version above
        its share gives the excess back at its next decision, so a canary is not starved)."""
        siblings = {k: s for k, s in self._active.items() if k[0] == key[0] and k != key}
        room = limit - sum(max(s.desired, self._running_of(k)) for k, s in siblings.items())
        wants = {k: max(s.last.wanted if s.last else 0, s.desired) for k, s in siblings.items()}
        wants[key] = max(state.last.wanted if state.last else 0, state.decider.latest)
        if sum(wants.values()) <= limit:
            return max(0, room)  # no contention: the version may grow into all the room there is
        return max(0, min(room, shares(limit, wants)[key]))

    async def _decide(self, key: Key, state: _Active, now: float) -> None:
        others = sum(s.desired for k, s in self._active.items() if k != key)
        cap = min(self._cap_of(key), self.total_limit - others)
        limit = self._shared_cap_of(key[0])
        if limit is not None:
            cap = min(cap, self._share(key, state, limit))
        state.decider.cap = max(0, cap)
        state.decider.floor = min(state.decider.cap, self._floor_of(key))
        result = state.decider.scale(now, ready=state.desired)
        state.last = result
        await self._report(key, result)
        if result.desired != state.desired:
            log.info("scale %s:%s %d -> %d (stable %.2f, panic %.2f%s)", key[0], key[1], state.desired,
                     result.desired, result.stable_average, result.panic_average,
                     ", panicking" if result.panic else "")
            state.desired = result.desired
            await self._apply(key, result.desired)

    async def _safe_observe(self, key: Key) -> int | None:
        try:
            return await self._observe(key)
        except Exception as exc:
            log.warning("cannot observe %s:%s: %s", key[0], key[1], exc)
            return None


async def interval_ticks(period: float, clock: Callable[[], float]) -> AsyncIterator[float]:
    """The production ticker: the clock's time every ``period`` seconds."""
    while True:
        await asyncio.sleep(period)
        yield clock()
