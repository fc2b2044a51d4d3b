"""``python -m gateway``: the HTTP front door.

Prints ``kambda-gateway ready http://HOST:PORT`` once it serves (with the real port when 0 was
asked). SIGTERM or SIGINT: stop accepting, let running requests finish (up to 8 s), then exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web

from apis.api import RoutesFileError
from gateway.app import Gateway, authenticator_of
from gateway.settings import GatewaySettings
from kambda import bus, runner
from kambda.aws import auth
from kambda.settings import bind_refusal

log = logging.getLogger("gateway")


async def serve(settings: GatewaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    refusal = bind_refusal(settings.host, settings.credentials_file, settings.insecure)
    if refusal is not None:
        print(f"kambda-gateway: {refusal}", file=sys.stderr, flush=True)
        raise SystemExit(1)
    try:
        authenticator = authenticator_of(settings)
    except auth.CredentialsError as exc:
        print(f"kambda-gateway: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    (log.warning if settings.insecure else log.info)("auth: %s", authenticator.describe())
    nc = await bus.connect(settings.nats_url, "kambda-gateway", settings.nats_creds)
    gateway = Gateway(settings, nc, authenticator)
    # aiohttp's keep-alive timer runs from a connection's start and is not pushed back by a partial
    # request head, so it also cuts off a client that sends its headers a byte at a time.
    app_runner = web.AppRunner(gateway.app(), access_log=None, handle_signals=False, shutdown_timeout=8.0,
                               keepalive_timeout=settings.idle_timeout)
    try:
        await app_runner.setup()
    except RoutesFileError as exc:
        print(f"kambda-gateway: {exc}", file=sys.stderr, flush=True)
        await nc.close()
        raise SystemExit(1) from None
    site = web.TCPSite(app_runner, settings.host, settings.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        print(f"kambda-gateway: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
              file=sys.stderr, flush=True)
        await app_runner.cleanup()
        await nc.close()
        raise SystemExit(1) from None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"kambda-gateway ready http://{settings.host}:{port}", flush=True)
    await stop.wait()
    log.info("gateway stopping")
    await app_runner.cleanup()
    await bus.drain(nc)


def main() -> None:
    runner.service_main("gateway", GatewaySettings.from_env, serve)


if __name__ == "__main__":
    main()
