"""The worker's read-only registry mirror and the KV watch loop under it (real nats-server; the
controller's own Registry as the writer)."""

from __future__ import annotations

import asyncio

import pytest

from controller.registry import Registry
from functions.lookup import FunctionLookup
from functions.registry_mirror import RegistryMirror
from kambda import bus
from kambda.aws import errors
from kambda.bus.kvwatch import KvWatch
from kambda.bus.natsserver import NatsServer
from kambda.names import LATEST, Arns
from kambda.v1.function_pb2 import Alias, FunctionConfig
from tests.conftest import free_port, until

ARNS = Arns("us-east-1", "000000000000")


async def _mirror_follows_the_writer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = NatsServer(tmp_path)
    url = await server.start()
    try:
        nc = await bus.connect(url, "test")
        js = nc.jetstream()
        await bus.ensure_platform(js)
        functions = await js.key_value(bus.FUNCTIONS_BUCKET)
        await functions.put("early", FunctionConfig(name="early", version=LATEST).SerializeToString())
        mirror = RegistryMirror(js, ARNS)
        await mirror.start()
        lookup: FunctionLookup = mirror
        assert "early" in lookup and lookup.get("early").name == "early"  # what was there before it started

        # A write it has not seen yet: caught_up() waits for it, so a reader never drops an event
        # for a function that was made a moment ago.
        await functions.put("fresh", FunctionConfig(name="fresh", version=LATEST).SerializeToString())
        await functions.put("fresh.1", FunctionConfig(name="fresh", version="1").SerializeToString())
        aliases = await js.key_value(bus.ALIASES_BUCKET)
        await aliases.put(bus.alias_key("fresh", "live"),
                          Alias(function="fresh", name="live", function_version="1").SerializeToString())
        assert await mirror.caught_up()
        assert mirror.has_version("fresh", "1") and mirror.get_version("fresh", "1").version == "1"
        assert mirror.has_alias("fresh", "live") and mirror.get_alias("fresh", "live").function_version == "1"
        with pytest.raises(errors.ResourceNotFound):
            mirror.get_version("fresh", "2")
        with pytest.raises(errors.ResourceNotFound):
            mirror.get("missing")

        await functions.delete("fresh.1")
        await aliases.purge(bus.alias_key("fresh", "live"))
        await functions.delete("fresh")
        assert await mirror.caught_up()
        assert "fresh" not in mirror and not mirror.has_version("fresh", "1") and not mirror.has_alias("fresh", "live")

        # The controller's own registry is a FunctionLookup too, always current.
        registry = Registry(js, ARNS)
        await registry.load()
        assert await registry.caught_up() and "early" in registry
        await mirror.stop()
        await nc.close()
    finally:
        await server.stop()


def test_the_mirror_follows_every_change_and_waits_for_what_it_has_not_seen(tmp_path) -> None:
    asyncio.run(_mirror_follows_the_writer(tmp_path))


async def _watch_restarts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = NatsServer(tmp_path, port=free_port())
    url = await server.start()
    try:
        nc = await bus.connect(url, "test")
        js = nc.jetstream()
        await bus.ensure_platform(js)
        seen: dict[str, bytes | None] = {}
        watch = KvWatch(js, bus.HTTP_BUCKET, seen.__setitem__, "test")
        await watch.start()
        kv = await js.key_value(bus.HTTP_BUCKET)
        await kv.put("route.a", b"1")
        await until(lambda: seen.get("route.a") == b"1", what="the first change")
        await server.stop()
        await server.start()  # the same port and store: the client reconnects
        await until(lambda: nc.is_connected, what="the reconnection")
        await kv.put("route.b", b"2")
        await until(lambda: seen.get("route.b") == b"2", timeout=60, what="a change after the restart")
        await watch.stop()
        await nc.close()
    finally:
        await server.stop()


def test_a_watch_goes_on_after_nats_restarts(tmp_path) -> None:
    asyncio.run(_watch_restarts(tmp_path))
