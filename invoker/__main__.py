"""``python -m invoker``: hosts execution environments for the functions assigned to it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from invoker.host import InvokerHost
from invoker.settings import InvokerSettings
from kambda import bus, runner
from kambda.logs import setup_logging
from kambda.settings import SettingsError

log = logging.getLogger("invoker")


async def serve(settings: InvokerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nc = await bus.connect(settings.nats_url, f"kambda-invoker-{settings.invoker_id}")
    host = InvokerHost(nc, settings)
    await host.start()
    log.info("invoker %s ready", settings.invoker_id)
    await stop.wait()
    await host.stop()
    await nc.drain()


def main() -> None:
    setup_logging("invoker")
    try:
        settings = InvokerSettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"kambda-invoker: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    runner.run(serve(settings))


if __name__ == "__main__":
    main()
