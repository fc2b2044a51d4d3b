"""Flow control: how many bytes one NATS connection may have coming towards it at once.

nats-server queues what it sends a client in that connection's outbound buffer, and cuts the
connection (a "slow consumer") when the buffer passes ``max_pending``; whatever was queued, a
pulled invocation or a result, is gone. A burst of large messages is enough: ten pulls answered
with 6 MB invocations at once are 60 MB. So what a connection asks for is bounded in bytes:

- every message it pulls from a stream (``Puller``) is pulled with a ``max_bytes``: an ordinary
  pull asks for at most ``SMALL_MESSAGE_BYTES``; once the server has said the next message is
  larger (409 "Message Size Exceeds MaxBytes"), a pull of up to ``MAX_PAYLOAD`` goes out only with
  that much reserved from the connection's budget, and does not wait on the server;
- a result larger than ``SMALL_MESSAGE_BYTES`` is not pushed to the gateway that waits for it: the
  invoker announces its size, and the gateway fetches it when its budget has room
  (``kambda/bus/dispatch.py``).

Small messages (pull answers of up to ``SMALL_MESSAGE_BYTES``, small results, status lines) come
on top of the budget, unreserved: an invoker of a thousand functions holds a thousand small pulls,
and reserving 64 KiB for each would leave most of them without one. ``MAX_PENDING`` leaves them
room: 8 MiB, a hundred and twenty-eight such messages arriving at the same instant. The budget is released
when a message has arrived (it is then in this process, no longer in the server's buffer).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client as NATS

from kambda.bus import MAX_PAYLOAD

log = logging.getLogger(__name__)

#: What a connection may have reserved for messages on their way to it.
IN_FLIGHT_BYTES = 3 * MAX_PAYLOAD
#: A message up to this size is pushed or pulled without a large reservation.
SMALL_MESSAGE_BYTES = 64 * 1024
#: On a result's announcement: its size in bytes (the body is empty; the reply subject fetches it).
SIZE_HEADER = "Kambda-Result-Bytes"
#: On the answer to an announcement: the waiter is gone, nothing will be fetched.
GONE_HEADER = "Kambda-Gone"
#: How long a large result waits to be fetched before it is given up.
OFFER_WAIT_S = 60.0
#: nats-server's ``max_pending``: the budget, plus room for the small messages pushed on top of it.
MAX_PENDING = IN_FLIGHT_BYTES + MAX_PAYLOAD


class ByteBudget:
    """Bytes reserved for messages on their way to one connection; never more than ``limit``.

    ``try_take`` either reserves at once or not at all; a caller that got nothing registers a
    wake-up with ``wait`` and is called back (once) when bytes are given back.
    """

    def __init__(self, limit: int = IN_FLIGHT_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self._wanting: dict[object, Callable[[], None]] = {}

    def try_take(self, size: int) -> bool:
        size = min(size, self.limit)
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used = max(0, self.used - min(size, self.limit))
        wanting, self._wanting = self._wanting, {}
        for wake in wanting.values():
            wake()

    def wait(self, key: object, wake: Callable[[], None]) -> None:
        """Call ``wake`` the next time bytes are given back (one registration per ``key``)."""
        self._wanting[key] = wake

    def forget(self, key: object) -> None:
        self._wanting.pop(key, None)


_budgets: weakref.WeakKeyDictionary[object, ByteBudget] = weakref.WeakKeyDictionary()


def budget_of(nc: object) -> ByteBudget:
    """The one budget of a connection, shared by everything that receives on it."""
    budget = _budgets.get(nc)
    if budget is None:
        budget = _budgets[nc] = ByteBudget()
    return budget


async def send(nc: NATS, subject: str, data: bytes, wait_s: float = OFFER_WAIT_S) -> bool:
    """Send ``data`` to whoever waits on ``subject``: a small message at once, a large one when it
    is fetched (the receiver fetches it once its budget has room). False when a large one was not
    fetched within ``wait_s`` or the receiver said it no longer waits. Meanwhile the caller holds
    the data, and so (an invoker's slot) takes no new work."""
    if len(data) <= SMALL_MESSAGE_BYTES:
        await nc.publish(subject, data)
        return True
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    try:
        await nc.publish(subject, b"", reply=inbox, headers={SIZE_HEADER: str(len(data))})
        try:
            fetch = await sub.next_msg(timeout=wait_s)
        except nats.errors.TimeoutError:
            log.warning("a result of %d bytes was not fetched within %.0f s: given up", len(data), wait_s)
            return False
        if (fetch.headers and fetch.headers.get(GONE_HEADER)) or not fetch.reply:
            return False
        await nc.publish(fetch.reply, data)
        return True
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
