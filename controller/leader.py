"""Leader election over a coordination.k8s.io/v1 Lease, in client-go's shape.

Why a Lease rather than a NATS KV entry: the Lease is where Kubernetes tooling looks for the
holder (``kubectl get lease``), the controller needs the API server anyway to act at all (a
controller that cannot reach it must not lead), and the same resourceVersion guard makes every
write compare-and-set. Only the controller's Deployment has two replicas; the embedded mode has
one controller and no election.

The rules, with ``D`` = lease duration (10 s), ``R`` = renew period (2 s) and ``T`` = renew
deadline (7 s, below ``D``):

- A candidate takes the Lease when it is free, or when its record has not changed for ``D``
  seconds *as this candidate observed it* (a monotonic clock, injected; wall clocks of two
  machines are never compared). Every write carries the resourceVersion it read: a 409 means
  someone else wrote first, and this candidate did not win.
- The leader renews every ``R``; a renewal that fails (409, or no success within ``T`` of the
  last one) makes it step down at once. Since ``T < D``, a deposed leader has stopped acting
  before any other candidate can see the Lease expire: there is never a moment with two leaders.
- Failover: the standby takes over at most ``D + R`` (12 s) after the leader's last renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from controller.orchestrators.k8s_api import MERGE_PATCH, Conflict, KubeApi, KubeError, NotFound, Obj

log = logging.getLogger(__name__)

LEADER_LABEL = "kambda.dev/role"
LEADER_VALUE = "leader"


def micro_time(moment: datetime) -> str:
    """Kubernetes' MicroTime: RFC 3339 with microseconds, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, api: KubeApi, namespace: str, name: str, identity: str,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC),
                 lease_duration: float = 10.0, renew_period: float = 2.0, renew_deadline: float = 7.0,
                 request_timeout: float = 2.0) -> None:
        assert renew_deadline < lease_duration, "a leader must give up before others may take over"
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._clock = clock
        self._wall = wall
        self.lease_duration = lease_duration
        self.renew_period = renew_period
        self.renew_deadline = renew_deadline
        self._request_timeout = request_timeout
        self._observed: tuple[object, ...] | None = None
        self._observed_at = 0.0
        self.leading = False
        self.last_renew = 0.0

    async def try_acquire_or_renew(self) -> bool:
        """One attempt: True if this candidate holds the Lease now."""
        now = self._clock()
        coordination = self.api.coordination
        try:
            lease = await self.api.call(coordination.read_namespaced_lease, self.name, self.namespace,
                                         _request_timeout=self._request_timeout)
        except NotFound:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(None, now)}
            try:
                lease = await self.api.call(coordination.create_namespaced_lease, self.namespace, body,
                                             _request_timeout=self._request_timeout)
            except Conflict:
                return False  # another candidate created it first
            self._observe(lease, now)
            return True
        spec = lease.get("spec") or {}
        self._observe(lease, now)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and now - self._observed_at < duration:
            return False  # held, and renewed within its duration as far as we have seen
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {**lease["metadata"]}, "spec": self._spec(lease, now)}
        try:
            updated = await self.api.call(coordination.replace_namespaced_lease, self.name, self.namespace, body,
                                           _request_timeout=self._request_timeout)
        except (Conflict, NotFound):
            return False  # someone else wrote it since we read it: they won
        self._observe(updated, now)
        return True

    def _spec(self, lease: Obj | None, now: float) -> Obj:
        old = (lease or {}).get("spec") or {}
        stamp = micro_time(self._wall())
        ours = old.get("holderIdentity") == self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": old.get("acquireTime") if ours and old.get("acquireTime") else stamp,
            "renewTime": stamp,
            "leaseTransitions": int(old.get("leaseTransitions") or 0) + (0 if ours or lease is None else 1),
        }

    def _observe(self, lease: Obj, now: float) -> None:
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), lease.get("metadata", {}).get("resourceVersion"))
        if record != self._observed:
            self._observed = record
            self._observed_at = now

    async def run(self, on_started: Callable[[], Awaitable[None]], on_stopped: Callable[[], Awaitable[None]],
                  sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Wait for the Lease, lead until a renewal fails, step down, return (the process then exits
        and starts again as a candidate: nothing of the old leader's state lingers).

        ``on_started`` runs beside the renewals (starting up may take longer than the deadline); if
        it fails, this candidate steps down and the error is raised after ``on_stopped``."""
        while not self.leading:
            if await self._attempt(self._request_timeout * 2):
                self.leading = True
                self.last_renew = self._clock()
                log.info("%s leads (lease %s/%s)", self.identity, self.namespace, self.name)
            else:
                await sleep(self.renew_period)
        starting = asyncio.ensure_future(on_started())
        try:
            while True:
                await sleep(self.renew_period)
                if starting.done() and starting.exception() is not None:
                    raise starting.exception()  # type: ignore[misc]
                left = self.last_renew + self.renew_deadline - self._clock()
                if left <= 0:
                    break  # no renewal for the whole deadline: others may take over soon
                renewed = await self._attempt(left)
                if renewed is False:
                    break  # someone else holds or wrote the Lease
                if renewed:
                    self.last_renew = self._clock()
        finally:
            self.leading = False
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starting
            log.warning("%s stops leading", self.identity)
            await on_stopped()

    async def release(self) -> None:
        """Give the Lease up (on a clean shutdown, after acting has stopped): a standby takes it at
        its next attempt instead of waiting for it to expire."""
        coordination = self.api.coordination
        try:
            lease = await self.api.call(coordination.read_namespaced_lease, self.name, self.namespace,
                                         _request_timeout=self._request_timeout)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1,
                             "renewTime": micro_time(self._wall())}
            await self.api.call(coordination.replace_namespaced_lease, self.name, self.namespace, lease,
                                 _request_timeout=self._request_timeout)
            log.info("%s released lease %s/%s", self.identity, self.namespace, self.name)
        except KubeError as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)

    async def _attempt(self, within: float) -> bool | None:
        """True: held; False: someone else holds it; None: no answer (the API failed or was slow)."""
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), within)
        except (TimeoutError, KubeError) as exc:
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc or "no answer in time")
            return None


async def label_pod(api: KubeApi, namespace: str, pod: str, leading: bool, attempts: int = 5) -> None:
    """Put ``kambda.dev/role: leader`` on this controller's pod (the Service selects it), or take it off."""
    for _ in range(attempts):
        try:
            current = await api.call(api.core.read_namespaced_pod, pod, namespace)
        except NotFound:
            log.warning("own pod %s/%s not found; cannot label it", namespace, pod)
            return
        labels = current["metadata"].get("labels") or {}
        if leading == (labels.get(LEADER_LABEL) == LEADER_VALUE):
            return
        patch = {"metadata": {"resourceVersion": current["metadata"].get("resourceVersion"),
                              "labels": {LEADER_LABEL: LEADER_VALUE if leading else None}}}
        with contextlib.suppress(Conflict):
            await api.call(api.core.patch_namespaced_pod, pod, namespace, patch, _content_type=MERGE_PATCH)
            return
    log.warning("could not %s the leader label on %s", "set" if leading else "remove", pod)
