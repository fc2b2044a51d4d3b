"""A real PostgreSQL server in a temporary data dir on a free port, run as a non-root user: for the bench's
tables figures and for the tests (tests/postgres.py turns :class:`Unavailable` into a skip, or a failure in CI).

initdb refuses to run as root (CI runs as root), so the server runs as a dedicated user (`kambda-pg`, created
with useradd when missing) through runuser. scripts/install-postgresql.sh installs Debian's PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_USER = "kambda-pg"


def _bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class Unavailable(Exception):
    """No PostgreSQL server can be started here; the message says why."""


def unavailable(reason: str) -> None:
    raise Unavailable(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user() -> tuple[list[str], str]:
    """The command prefix that runs as a non-root user, and that user's name."""
    if os.getuid() != 0:
        return [], pwd.getpwuid(os.getuid()).pw_name
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                       check=True, capture_output=True)
    return ["runuser", "-u", PG_USER, "--"], PG_USER


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL; yields its DSN; stops it and removes its data dir."""
    bindir = _bindir()
    if bindir is None:
        unavailable("no initdb on PATH or under /usr/lib/postgresql")
    assert bindir is not None
    prefix, user = _as_user()
    root = Path(tempfile.mkdtemp(prefix="kambda-pg-"))
    data = root / "data"
    if prefix:
        shutil.chown(root, user)
    os.chmod(root, 0o700)
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        init = subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "kambda", "--auth=trust",
                               "-E", "UTF8", "--locale=C"], capture_output=True)
        if init.returncode != 0:
            unavailable(f"initdb failed: {init.stderr.decode(errors='replace')[-500:]}")
        with open(root / "server.log", "wb") as log:
            proc = subprocess.Popen([*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                                     "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                                     "-c", "max_connections=200"],
                                    stdout=log, stderr=subprocess.STDOUT)
        dsn = f"postgresql://kambda@127.0.0.1:{port}/postgres"
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(dsn, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    unavailable(f"postgres did not start: {(root / 'server.log').read_text()[-500:]}")
                time.sleep(0.05)
        yield dsn
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(dsn: str, name: str) -> str:
    """A new empty database on the server: one per test module, so their tables do not meet."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return dsn.rsplit("/", 1)[0] + "/" + name
