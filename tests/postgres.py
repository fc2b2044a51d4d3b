"""A real PostgreSQL server for tests (bench/pg.py starts it): when none can be started, the tests that need it
skip with the reason, except under CI=true where they fail."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench import pg
from bench.pg import fresh_database

__all__ = ["fresh_database", "postgres_server"]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL; yields its DSN; stops it and removes its data dir."""
    try:
        with pg.postgres_server() as dsn:
            yield dsn
    except pg.Unavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc} (run scripts/install-postgresql.sh)")
