"""``python -m invoker``: hosts execution environments for the functions assigned to it."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal

from invoker.host import InvokerHost
from invoker.settings import InvokerSettings
from kambda import bus, runner
from kambda.bus import callout, identities

log = logging.getLogger("invoker")


def bound_login(settings: InvokerSettings) -> tuple[str, dict[str, str]]:
    """A pod whose credentials say ``bind`` logs in as ``pod:<invoker id>:<key>`` (the controller's auth
    callout grants that login its own assignment subject alone: kambda/bus/callout.py), with a random
    key kept in its work directory, so that a restarted invoker in the same pod keeps it."""
    if not settings.nats_creds or "user_credentials" in bus.login_options(settings.nats_creds) \
            or not identities.read(settings.nats_creds).get("bind"):
        return "", {}
    path = settings.work_dir / "assign-key"
    try:
        key = path.read_text().strip()
    except OSError:
        key = ""
    if not key:
        key = secrets.token_hex(16)
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(key)
    return key, {"user": callout.pod_user(settings.invoker_id, key), "inbox_prefix": callout.pod_inbox(key)}


async def serve(settings: InvokerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    key, login = bound_login(settings)
    nc = await bus.connect(settings.nats_url, f"kambda-invoker-{settings.invoker_id}", settings.nats_creds, **login)
    host = InvokerHost(nc, settings, assign_key=key)
    await host.start()
    # The pod's readiness probe looks for this file: Ready means connected and taking assignments.
    settings.ready_file.write_text(settings.invoker_id)
    log.info("invoker %s ready", settings.invoker_id)
    await stop.wait()
    settings.ready_file.unlink(missing_ok=True)
    await host.drain(settings.drain_timeout)
    await host.stop()
    await bus.drain(nc)


def main() -> None:
    runner.service_main("invoker", InvokerSettings.from_env, serve)


if __name__ == "__main__":
    main()
