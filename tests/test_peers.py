"""kambda/peers.py: the kernel's word on who holds the other end of a local TCP connection."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from kambda.peers import PeerCache, tcp_owner

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="connecting as another uid needs root")

#: A client any uid can run (the test's interpreter may sit in a directory only root enters).
CLIENT = 'exec 3<>"/dev/tcp/$0/$1"; read -r -n 1 <&3'



def _accept_from(family: int, host: str, uid: int | None) -> tuple[int | None, int | None]:
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.bind((host, 0))
        server.listen(1)
        port = server.getsockname()[1]
        child = subprocess.Popen(["/bin/bash", "-c", CLIENT, host, str(port)],
                                 user=uid if uid is not None else None)
        try:
            server.settimeout(20)
            conn, peer = server.accept()
            with conn:
                local = conn.getsockname()
                owner = tcp_owner((peer[0], peer[1]), (local[0], local[1]))
                stranger = tcp_owner((peer[0], peer[1] ^ 1), (local[0], local[1]))
                conn.sendall(b"x")
        finally:
            child.wait(20)
    return owner, stranger


@as_root
def test_the_owner_of_a_loopback_connection_is_the_client_s_uid() -> None:
    assert _accept_from(socket.AF_INET, "127.0.0.1", 65534) == (65534, None)
    assert _accept_from(socket.AF_INET, "127.0.0.1", None) == (0, None)


@as_root
def test_ipv6_loopback_too() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        owner, _ = _accept_from(socket.AF_INET6, "::1", 65534)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert owner == 65534


def test_a_remote_or_unknown_peer_has_no_owner() -> None:
    assert tcp_owner(("192.0.2.7", 40000), ("127.0.0.1", 8080)) is None
    assert PeerCache().uid_of(object()) is None
