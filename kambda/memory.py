"""Resident memory of process trees, read from /proc: the memory watchdog of function environments
(invoker/environment.py) and of task containers (tasks/runner.py).

An RSS watchdog rather than a cgroup: it needs no privileges and works on cgroup v1 hosts too. It
samples every :data:`POLL_S`, so a process can overshoot its limit for that long.
"""

from __future__ import annotations

import os

#: How often a memory watchdog samples the resident memory of what it watches.
POLL_S = 0.05


def status_kb(pid: int, key: str) -> int:
    """A kB field (``VmRSS:``, ``VmHWM:``) of /proc/PID/status; 0 for a process that is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (via /proc/PID/task/TID/children)."""
    total = 0
    todo = [pid]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += status_kb(current, "VmRSS:")
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo.extend(int(c) for c in children.read().split())
        except (OSError, ValueError):
            pass
    return total
