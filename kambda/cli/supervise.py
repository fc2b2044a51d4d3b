"""When ``kambda up`` restarts a part that died, and when it gives up.

The decision is data and arithmetic, with time as an argument: a part's restarts within the last
``window_s`` seconds are counted; the n-th waits ``backoff[n - 1]`` before it starts, and a failure
past the end of ``backoff`` within the window means the part cannot stay up (a port taken, a
broken installation), so ``kambda up`` stops instead of spinning. A part that then runs for a whole
window quietly starts again from the first delay.

:func:`supervise` is the loop ``kambda up`` runs once everything is up: wait for a part to exit,
decide, wait the delay, restart it; a stop request ends it at any of those steps at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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


class Supervised(Protocol):
    """What :func:`supervise` needs of the platform (kambda/cli/up.py)."""

    async def wait_for_failure(self) -> tuple[str, int]:
        """The name and exit code of the first part that exits on its own."""
        ...

    async def restart(self, name: str) -> None:
        """Start that part again; RuntimeError, with a one-line reason, when it cannot."""
        ...

    def why(self, name: str) -> str:
        """The last line the part logged, or ""."""
        ...

    def log_of(self, name: str) -> Path:
        ...


def _say(line: str) -> None:
    print(f"kambda: {line}", file=sys.stderr, flush=True)


async def supervise(platform: Supervised, stop: asyncio.Event, clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                    say: Callable[[str], None] = _say) -> int:
    """Restart parts that die until ``stop`` is set (0) or one keeps failing (1)."""
    policies: dict[str, RestartPolicy] = {}
    while True:
        failed = asyncio.ensure_future(platform.wait_for_failure())
        if not await _unless_stopped(failed, stop):
            return 0
        name, code = failed.result()
        while True:
            policy = policies.setdefault(name, RestartPolicy())
            delay = policy.failed(clock())
            if delay is None:
                say(f"the {name} failed {policy.recent} times within {policy.window_s:g} s; shutting down "
                    f"(see {platform.log_of(name)})")
                return 1
            last = platform.why(name)
            say(f"the {name} exited with code {code}{': ' + last if last else ''}; restarting it in {delay:g} s "
                f"(see {platform.log_of(name)})")
            if not await _unless_stopped(asyncio.ensure_future(sleep(delay)), stop):
                return 0
            restarting = asyncio.ensure_future(platform.restart(name))
            if not await _unless_stopped(restarting, stop):
                return 0
            try:
                restarting.result()
            except RuntimeError as exc:
                say(str(exc))
                code = -1
                continue
            say(f"the {name} is running again")
            break


async def _unless_stopped(task: asyncio.Future[Any], stop: asyncio.Event) -> bool:
    """Wait for ``task``; False (and the task cancelled) if ``stop`` is set meanwhile."""
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not stop.is_set():
        return True
    task.cancel()  # a stop request comes first, even when both happened
    with contextlib.suppress(asyncio.CancelledError, RuntimeError):
        await task
    return False
