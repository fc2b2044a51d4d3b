"""``python -m invoker``: hosts execution environments for the functions assigned to it."""

from __future__ import annotations

import asyncio
import logging
import signal

from invoker.host import InvokerHost
from invoker.settings import InvokerSettings
from kambda import bus, runner

log = logging.getLogger("invoker")


async def serve(settings: InvokerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nc = await bus.connect(settings.nats_url, f"kambda-invoker-{settings.invoker_id}")
    host = InvokerHost(nc, settings)
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
