"""When ``kambda up`` restarts a part that died, and when it gives up.

The decision is data and arithmetic, with time as an argument: a part's restarts within the last
``window_s`` seconds are counted; the n-th waits ``backoff[n - 1]`` before it starts, and a failure
past the end of ``backoff`` within the window means the part cannot stay up (a port taken, a
broken installation), so ``kambda up`` stops instead of spinning. A part that then runs for a whole
window quietly starts again from the first delay.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: Delay before the 1st, 2nd, ... restart of one part within a window (seconds).
RESTART_BACKOFF_S: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
#: Failures older than this no longer count.
RESTART_WINDOW_S = 60.0


@dataclass
class RestartPolicy:
    backoff: tuple[float, ...] = RESTART_BACKOFF_S
    window_s: float = RESTART_WINDOW_S
    _failures: deque[float] = field(default_factory=deque, repr=False)

    def failed(self, now: float) -> float | None:
        """Record a failure at ``now``: the delay before the restart, or None to give up."""
        while self._failures and self._failures[0] <= now - self.window_s:
            self._failures.popleft()
        self._failures.append(now)
        if len(self._failures) > len(self.backoff):
            return None
        return self.backoff[len(self._failures) - 1]

    @property
    def recent(self) -> int:
        """How many failures the last decision counted."""
        return len(self._failures)
