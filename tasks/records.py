"""ECS's records on NATS: clusters, task definitions and tasks, their keys and ARNs, and the task state change event.

- ``kambda_ecs`` KV bucket: ``cluster.<name>`` a cluster, ``def.<family>.<revision>`` a task definition revision,
  ``family.<family>`` the family's last revision (the counter RegisterTaskDefinition bumps compare-and-set);
- ``kambda_ecs_tasks`` KV bucket: ``<task id>`` one task's record: what DescribeTasks answers (AWS's Task shape)
  and, under ``kambda``, what the worker needs to run it (the definition it started with, its overrides, the
  worker that owns it);
- ``kambda_ecs_workers`` KV bucket: ``<worker id>`` each worker's heartbeat (the time it last said it was alive);
- ``KAMBDA_ECS_WORK`` stream, subjects ``kambda.ecs.run.<task id>``: tasks to start (a work queue, one durable
  consumer ``ecs-runner`` shared by the workers);
- ``kambda.ecs.stop.<task id>``: StopTask's word to the worker that runs the task (core NATS; the record's
  desiredStatus says it too, for a task no worker has taken yet).

Names are made of letters, digits, hyphens and underscores (ECS's own rule for clusters and families), so they
are KV keys as they are.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from kambda.bus.jsonkv import Bucket, Record

ECS_BUCKET = "kambda_ecs"
TASKS_BUCKET = "kambda_ecs_tasks"
WORKERS_BUCKET = "kambda_ecs_workers"
WORK_STREAM = "KAMBDA_ECS_WORK"
RUN_PREFIX = "kambda.ecs.run."
STOP_PREFIX = "kambda.ecs.stop."
RUNNER = "ecs-runner"
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
DEFAULT_CLUSTER = "default"
#: Statuses a task goes through, in order.
STATUSES = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING",
            "STOPPED")
#: What a task's ``kambda`` part holds: none of it is AWS's.
PRIVATE = "kambda"


def cluster_key(name: str) -> str:
    return f"cluster.{name}"


def definition_key(family: str, revision: int) -> str:
    return f"def.{family}.{revision}"


def family_key(family: str) -> str:
    return f"family.{family}"


def run_subject(task_id: str) -> str:
    return RUN_PREFIX + task_id


def stop_subject(task_id: str) -> str:
    return STOP_PREFIX + task_id


def new_task_id() -> str:
    return uuid.uuid4().hex


class Arns:
    """ECS's ARNs in one account and region."""

    def __init__(self, region: str, account: str) -> None:
        self.region = region
        self.account = account
        self._prefix = f"arn:aws:ecs:{region}:{account}:"

    def cluster(self, name: str) -> str:
        return f"{self._prefix}cluster/{name}"

    def definition(self, family: str, revision: int) -> str:
        return f"{self._prefix}task-definition/{family}:{revision}"

    def task(self, cluster: str, task_id: str) -> str:
        return f"{self._prefix}task/{cluster}/{task_id}"

    def container(self, cluster: str, task_id: str) -> str:
        return f"{self._prefix}container/{cluster}/{task_id}/{uuid.uuid4()}"

    def name_of(self, value: str, kind: str) -> str | None:
        """The name in an ARN of ``kind`` (``cluster``, ``task-definition``, ``task``) or a bare name; None for an
        ARN of another kind, account or region."""
        if not value.startswith("arn:"):
            return value
        prefix = f"{self._prefix}{kind}/"
        return value[len(prefix):] if value.startswith(prefix) else None


class Records:
    """The three buckets of ECS."""

    def __init__(self, js: JetStreamContext) -> None:
        self.ecs = Bucket(js, ECS_BUCKET)
        self.tasks = Bucket(js, TASKS_BUCKET)
        self.workers = Bucket(js, WORKERS_BUCKET)


async def ensure(js: JetStreamContext) -> None:
    """Create ECS's buckets and work stream (idempotent; the worker tier calls it at start)."""
    for bucket in (ECS_BUCKET, TASKS_BUCKET, WORKERS_BUCKET):
        try:
            await js.key_value(bucket)
        except NotFoundError:
            await js.create_key_value(bucket=bucket, history=1, storage=StorageType.FILE)
    try:
        await js.stream_info(WORK_STREAM)
    except NotFoundError:
        await js.add_stream(StreamConfig(name=WORK_STREAM, subjects=[RUN_PREFIX + ">"],
                                         retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
                                         max_msg_size=1024 * 1024, duplicate_window=120))


def public(task: Record) -> Record:
    """The task as DescribeTasks shows it."""
    return {k: v for k, v in task.items() if k != PRIVATE}


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


TIMESTAMPS = ("createdAt", "startedAt", "stoppingAt", "stoppedAt", "pullStartedAt", "pullStoppedAt",
              "executionStoppedAt", "connectivityAt")


def state_change_event(task: Record, arns: Arns, now: float) -> dict[str, Any]:
    """The EventBridge event of a task's status (AWS's "ECS Task State Change": the task, timestamps in ISO 8601)."""
    detail = public(task)
    for key in TIMESTAMPS:
        if key in detail:
            detail[key] = iso(detail[key])
    detail["updatedAt"] = iso(now)
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "ECS Task State Change", "source": "aws.ecs",
            "account": arns.account, "time": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": arns.region, "resources": [task["taskArn"]], "detail": detail}
