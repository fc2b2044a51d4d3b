"""How many environments one function version needs: a pure function of what was seen, and when.

Knative's KPA, with Lambda's numbers (STYLE.md, "Knative Serving's autoscaler"):

- Observed concurrency (requests running + waiting) is averaged over a *stable* window (60 s) and
  a short *panic* window (6 s). desired = ceil(average / target per environment); the target is
  1 for Lambda semantics (one request per environment).
- Panic: when the panic window asks for ``panic_threshold`` times what is running (or anything at
  all while nothing runs), follow the panic window, and keep doing so until a whole stable window
  has passed without that; while panicking never scale down.
- Scale-up is limited to ``max_scale_up_rate`` times what is running per decision.
- Scale-down waits: the answer is the highest desired value of the last seconds (Knative's
  scale-down delay), sized so that stable window + delay = ``scale_to_zero_after``: an
  environment idle that long is stopped, and a function idle that long scales to zero. (A
  ``scale_to_zero_after`` shorter than the stable window shortens both windows to it.)
- Bounds: never below the provisioned floor, never above the cap (reserved concurrency or the
  per-function limit). The cap may be a version's share of its function's reserved concurrency,
  which every version of a function draws from (:func:`shares`).

Nothing here reads a clock: every method takes ``now``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from kambda.settings import SettingsError


@dataclass(frozen=True)
class ScalerConfig:
    scale_to_zero_after: float = 300.0
    target_per_environment: float = 1.0
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    #: After scaling to zero a version is still watched this long, to catch a request that raced
    #: the scale-down, then it leaves the active set.
    linger: float = 10.0

    def __post_init__(self) -> None:
        checks = (
            ("scale_to_zero_after", self.scale_to_zero_after, 0.0, 86400.0),
            ("target_per_environment", self.target_per_environment, 0.01, 1000.0),
            ("stable_window", self.stable_window, 1.0, 3600.0),
            ("panic_window", self.panic_window, 0.1, self.stable_window),
            ("panic_threshold", self.panic_threshold, 1.0, 1000.0),
            ("max_scale_up_rate", self.max_scale_up_rate, 1.0, 1e6),
            ("linger", self.linger, 0.0, 3600.0),
        )
        for name, value, lo, hi in checks:
            if not lo <= value <= hi:
                raise SettingsError(f"autoscaler {name}={value} is out of range (expected {lo}..{hi})")


@dataclass(frozen=True)
class ScaleResult:
    desired: int
    panic: bool
    stable_average: float
    panic_average: float
    #: What the version would hold without its floor and cap.
    wanted: int = 0


def shares(limit: int, wants: dict[Any, int]) -> dict[Any, int]:
    """Split a limit shared by several claimants (a function's reserved concurrency, by its
    versions): each gets all it wants when that fits; otherwise shares in proportion to what each
    wants (largest remainders), and no claimant that wants any is left with none while another
    holds more than one. Never more in all than ``limit``."""
    total = sum(wants.values())
    if total <= limit:
        return dict(wants)
    exact = {k: limit * w / total for k, w in wants.items()}
    got = {k: math.floor(x) for k, x in exact.items()}
    by_remainder = sorted(exact, key=lambda k: (got[k] - exact[k], -wants[k]))
    for k in by_remainder[: limit - sum(got.values())]:
        got[k] += 1
    for k in sorted((k for k in wants if wants[k] > 0 and got[k] == 0), key=lambda k: -wants[k]):
        donor = max(got, key=lambda d: got[d])
        if got[donor] <= 1:
            break
        got[donor] -= 1
        got[k] = 1
    return got


class WindowMax:
    """The maximum of the values recorded within the last ``window`` seconds (monotonic deque)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._items: deque[tuple[float, int]] = deque()

    def record(self, now: float, value: int) -> None:
        while self._items and self._items[-1][1] <= value:
            self._items.pop()
        self._items.append((now, value))

    def max(self, now: float) -> int:
        while self._items and self._items[0][0] < now - self.window:
            self._items.popleft()
        return self._items[0][1] if self._items else 0


class WindowAverage:
    """The time-weighted average of a step function over the last ``window`` seconds.

    Each recorded value holds until the next one; time before the first record counts as 0, so a
    burst on a function that was idle raises the long average only gradually, as Knative's does.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._items: deque[tuple[float, float]] = deque()  # (since, value)

    def record(self, now: float, value: float) -> None:
        if self._items and self._items[-1][0] >= now:
            self._items[-1] = (self._items[-1][0], value)  # same instant: the latest wins
        else:
            self._items.append((now, value))

    def average(self, now: float) -> float:
        start = now - self.window
        while len(self._items) > 1 and self._items[1][0] <= start:
            self._items.popleft()  # superseded before the window began
        total = 0.0
        for i, (since, value) in enumerate(self._items):
            until = self._items[i + 1][0] if i + 1 < len(self._items) else now
            total += value * max(0.0, until - max(since, start))
        return total / self.window


@dataclass
class Decider:
    config: ScalerConfig
    cap: int
    floor: int = 0
    stable: WindowAverage = field(init=False)
    panic: WindowAverage = field(init=False)
    _recent_desired: WindowMax = field(init=False)
    _latest: int = field(init=False, default=0)
    _panic_since: float | None = field(init=False, default=None)
    _last_desired: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        c = self.config
        self.stable_window = min(c.stable_window, max(c.scale_to_zero_after, 0.001))
        self.stable = WindowAverage(self.stable_window)
        self.panic = WindowAverage(min(c.panic_window, self.stable_window))
        self._recent_desired = WindowMax(max(0.0, c.scale_to_zero_after - self.stable_window))

    def record(self, now: float, concurrency: int) -> None:
        self.stable.record(now, concurrency)
        self.panic.record(now, concurrency)
        self._latest = concurrency

    def scale(self, now: float, ready: int) -> ScaleResult:
        """How many environments to hold now, given ``ready`` environments running."""
        c = self.config
        stable_avg, panic_avg = self.stable.average(now), self.panic.average(now)
        # What is waiting right now counts in full: a request must never wait on an average.
        desired_stable = math.ceil(max(stable_avg, self._latest) / c.target_per_environment - 1e-9)
        desired_panic = math.ceil(max(panic_avg, self._latest) / c.target_per_environment - 1e-9)
        if desired_panic > 0 and (ready == 0 or desired_panic / ready >= c.panic_threshold):
            self._panic_since = now
        elif self._panic_since is not None and now - self._panic_since >= self.stable_window:
            self._panic_since = None
        panicking = self._panic_since is not None
        desired = max(desired_panic, self._last_desired) if panicking else desired_stable
        desired = min(desired, math.ceil(c.max_scale_up_rate * max(1, ready)))
        self._recent_desired.record(now, desired)
        wanted = self._recent_desired.max(now)
        desired = max(self.floor, min(self.cap, wanted))
        self._last_desired = desired
        return ScaleResult(desired=desired, panic=panicking, stable_average=stable_avg, panic_average=panic_avg,
                           wanted=wanted)

    @property
    def latest(self) -> int:
        """The concurrency recorded last (requests running and waiting right then)."""
        return self._latest
