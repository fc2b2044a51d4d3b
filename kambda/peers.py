"""Which local user holds the other end of a TCP connection (the kernel says, not the client).

A connection from this machine has two sockets on it: ours, and the caller's, whose local address is
the remote address we see. ``/proc/net/tcp`` and ``/proc/net/tcp6`` list every socket of the network
namespace with its owner's uid, so the caller's uid is that of the row whose local address is our
peer and whose remote address is our own end. The gateway uses it to tell a sandboxed function
(a uid of the sandbox range, invoker/sandbox.py) from the operator on the same loopback.

The answer of one connection never changes while it is open, so :class:`PeerCache` keeps it per
transport: the tables are read once per connection, not once per request.

:func:`refuse_sandboxed` is the guard of a platform listener that only the platform's own parts
need (the worker's /metrics and /healthz): a sandboxed function is answered 403.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from kambda.settings import is_loopback

PROC_NET = Path("/proc/net")


def _hex_address(host: str, port: int) -> set[str]:
    """The spellings of an address in /proc/net/tcp{,6} (words in host byte order, port in hex);
    an IPv4-mapped IPv6 address is also spelled as the IPv4 address it maps."""
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    spellings = set()
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        addresses.append(ip.ipv4_mapped)
    elif isinstance(ip, ipaddress.IPv4Address):
        addresses.append(ipaddress.IPv6Address(f"::ffff:{ip}"))
    for address in addresses:
        raw = address.packed
        words = "".join(f"{struct.unpack('=I', raw[i:i + 4])[0]:08X}" for i in range(0, len(raw), 4))
        spellings.add(f"{words}:{port:04X}")
    return spellings


def tcp_owner(peer: tuple[str, int], local: tuple[str, int], proc_net: Path = PROC_NET) -> int | None:
    """The uid owning the socket at ``peer`` connected to ``local``; None when no local socket is
    (the caller is on another machine or in another network namespace)."""
    peers, locals_ = _hex_address(*peer), _hex_address(*local)
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc_net / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and fields[1] in peers and fields[2] in locals_:
                return int(fields[7])
    return None


class PeerCache:
    """``uid_of(transport)``, read from the kernel once per connection."""

    def __init__(self, proc_net: Path = PROC_NET) -> None:
        self._proc_net = proc_net
        self._known: weakref.WeakKeyDictionary[object, int | None] = weakref.WeakKeyDictionary()

    def uid_of(self, transport: object) -> int | None:
        try:
            return self._known[transport]
        except (KeyError, TypeError):
            pass
        uid = self._lookup(transport)
        try:
            self._known[transport] = uid
        except TypeError:  # a transport without weak references: looked up per request
            pass
        return uid

    def _lookup(self, transport: object) -> int | None:
        get = getattr(transport, "get_extra_info", None)
        if get is None:
            return None
        peer, local, sock = get("peername"), get("sockname"), get("socket")
        if sock is not None and getattr(sock, "family", None) == socket.AF_UNIX:
            return None
        if not (isinstance(peer, tuple) and isinstance(local, tuple)):
            return None
        try:
            return tcp_owner((peer[0], peer[1]), (local[0], local[1]), self._proc_net)
        except ValueError:
            return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def refuse_sandboxed(sandbox_uids: range | None, cache: PeerCache | None = None
                     ) -> Middleware:
    """An aiohttp middleware that answers 403 to a connection a sandboxed function holds (a uid of
    ``sandbox_uids``), and to a loopback one whose socket cannot be found (so, failing closed, as the
    gateway does); with no sandbox (None) it lets everything through."""
    peers = cache or PeerCache()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if sandbox_uids is not None:
            uid = peers.uid_of(request.transport)
            if (uid is None and is_loopback(request.remote)) or (uid is not None and uid in sandbox_uids):
                return web.json_response({"message": "not for functions"}, status=403)
        return await handler(request)

    return guard

