"""The controller's gRPC takes calls from kambda's components only (issue 27, part 2): `kambda up`
serves it on a Unix socket in a 0700 directory, and every call must carry the token."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from kambda import rpc
from kambda.v1 import controller_pb2 as pb
from kambda.v1.controller_pb2_grpc import ControllerStub
from tests.conftest import Platform


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(tmp_path_factory.mktemp("kambda-grpc-auth")).start()
    yield running
    running.stop()


def _list(address: str, token: str) -> grpc.StatusCode:
    async def call() -> grpc.StatusCode:
        async with rpc.channel(address, token) as channel:
            try:
                await ControllerStub(channel).ListFunctions(pb.ListFunctionsRequest(), timeout=10)
            except aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    return asyncio.run(call())


def test_the_controller_listens_on_a_private_unix_socket(up: Platform) -> None:
    folder = up.state_dir / "controller"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.geteuid()
    assert stat.S_ISSOCK((folder / "grpc.sock").stat().st_mode)
    assert stat.S_IMODE((folder / "token").stat().st_mode) == 0o600


def test_calls_without_the_token_are_refused(up: Platform) -> None:
    address = f"unix:{up.state_dir / 'controller' / 'grpc.sock'}"
    token = (up.state_dir / "controller" / "token").read_text()
    assert _list(address, "") == grpc.StatusCode.UNAUTHENTICATED
    assert _list(address, "x" * 43) == grpc.StatusCode.UNAUTHENTICATED
    assert _list(address, token) == grpc.StatusCode.OK
    # The gateway, which has it, still reaches the controller.
    assert up.lambda_client().list_functions()["Functions"] is not None


def test_token_gate_on_tcp_refuses_strangers_even_ping(tmp_path: Path) -> None:
    """The chart's controller listens on TCP; there the token alone keeps strangers out."""

    async def scenario() -> tuple[grpc.StatusCode, grpc.StatusCode]:
        from kambda.v1.controller_pb2_grpc import ControllerServicer, add_ControllerServicer_to_server

        class Service(ControllerServicer):  # type: ignore[misc]
            async def Ping(self, request: pb.PingRequest, context: aio.ServicerContext) -> pb.PingResponse:
                return pb.PingResponse(nats_connected=True)

        token = rpc.write_token(tmp_path / "token")
        server = aio.server(interceptors=[rpc.TokenGate(rpc.read_token(str(tmp_path / "token")))])
        add_ControllerServicer_to_server(Service(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            codes = []
            for given in ("", token):
                async with rpc.channel(f"127.0.0.1:{port}", given) as channel:
                    try:
                        await ControllerStub(channel).Ping(pb.PingRequest(), timeout=10)
                        codes.append(grpc.StatusCode.OK)
                    except aio.AioRpcError as exc:
                        codes.append(exc.code())
            return codes[0], codes[1]
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) == (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OK)


def test_a_short_or_missing_token_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "short").write_text("abc")
    with pytest.raises(rpc.TokenError, match="shorter than 16"):
        rpc.read_token(str(tmp_path / "short"))
    with pytest.raises(rpc.TokenError, match="cannot read"):
        rpc.read_token(str(tmp_path / "missing"))
    assert rpc.read_token("") == ""
