"""How a service process runs: logging, settings from the environment, its main coroutine on uvloop."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from kambda.logs import setup_logging
from kambda.settings import SettingsError

T = TypeVar("T")
S = TypeVar("S")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop where it is installed (20-45% on the NATS paths)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


#: glibc's M_MMAP_THRESHOLD, and the size from which a service's buffers are their own mappings.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024


def return_large_buffers() -> None:
    """Give large buffers back to the system when they are freed.

    glibc raises its mmap threshold each time a mapped block is freed, up to 32 MB, so after a few
    6 MB payloads every later one comes from the heap, whose freed pages are not returned: a
    gateway grew by hundreds of MB after some rounds of large payloads and stayed there. A fixed
    threshold keeps every buffer of a payload's size mapped and unmapped on free."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass  # not glibc (musl, say): nothing to tune


def service_main(component: str, load: Callable[[Mapping[str, str]], S],
                 serve: Callable[[S], Coroutine[Any, Any, None]]) -> None:
    """The ``main`` of a service: a bad setting is a one-line error and exit code 1."""
    setup_logging(component)
    return_large_buffers()
    try:
        settings = load(os.environ)
    except SettingsError as exc:
        print(f"kambda-{component}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    run(serve(settings))
