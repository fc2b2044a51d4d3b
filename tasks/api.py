"""Amazon ECS's API on the front door (JSON 1.1, ``X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Op>``):
``boto3.client("ecs")`` works unchanged for clusters, task definitions and tasks.

Records live in the ``kambda_ecs`` and ``kambda_ecs_tasks`` buckets (tasks/records.py). RunTask and StartTask
write a task's record and put it on the work stream; the worker tier runs it (tasks/engine.py) and keeps its
record up to date; StopTask marks it and tells its worker. The ``default`` cluster always exists, as it does for
an account that has used ECS. Images: what tasks/engine.py's ``Images`` resolves (the built-in registry's
references, and kambda's ``oci-layout:<dir>[:<ref>]``).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS

from kambda.aws import errors as aws_errors
from kambda.aws.front import Context, Front, Handler
from tasks import records
from tasks.records import DEFAULT_CLUSTER, NAME_RE, PRIVATE, Arns, Record, Records

Operation = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_COUNT = 10
LAUNCH_TYPES = ("FARGATE", "EC2", "EXTERNAL", "MANAGED_INSTANCES")
CONDITIONS = ("START", "COMPLETE", "SUCCESS", "HEALTHY")
FARGATE_PLATFORM = "1.4.0"


class EcsError(aws_errors.KambdaError):
    status = 400
    error_type = "User"


class ClientError(EcsError):
    code = "ClientException"


class InvalidParameter(EcsError):
    code = "InvalidParameterException"


class ClusterNotFound(EcsError):
    code = "ClusterNotFoundException"


class ClusterContainsTasks(EcsError):
    code = "ClusterContainsTasksException"


def _page(items: list[Any], body: dict[str, Any], default: int = 100, most: int = 100) -> tuple[list[Any], str | None]:
    size = body.get("maxResults") or default
    if not 1 <= int(size) <= most:
        raise InvalidParameter(f"maxResults must be between 1 and {most}")
    token = body.get("nextToken")
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except (ValueError, UnicodeDecodeError):
        raise InvalidParameter("Invalid nextToken") from None
    end = start + int(size)
    more = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], more


def _int_text(value: Any, what: str) -> str | None:
    """Task-level cpu and memory are strings: ``"256"``, ``"1 vCPU"``, ``"0.5 GB"``; kept as MiB/units text."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    number, _, unit = text.partition(" ")
    try:
        amount = float(number)
    except ValueError:
        raise ClientError(f"Invalid '{what}' setting for task: {text}") from None
    unit = unit.lower()
    if what == "cpu" and unit in ("vcpu", "vcpus"):
        amount *= 1024
    elif what == "memory" and unit in ("gb", "gib"):
        amount *= 1024
    elif unit:
        raise ClientError(f"Invalid '{what}' setting for task: {text}")
    if amount <= 0:
        raise ClientError(f"Invalid '{what}' setting for task: {text}")
    return str(int(amount))


class EcsApi:
    def __init__(self, nc: NATS, arns: Arns, clock: Callable[[], float] = time.time) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._records = Records(self._js)
        self._arns = arns
        self._clock = clock
        self._ops: dict[str, Operation] = {
            "CreateCluster": self.create_cluster, "DescribeClusters": self.describe_clusters,
            "ListClusters": self.list_clusters, "DeleteCluster": self.delete_cluster,
            "RegisterTaskDefinition": self.register_task_definition,
            "DeregisterTaskDefinition": self.deregister_task_definition,
            "DescribeTaskDefinition": self.describe_task_definition,
            "ListTaskDefinitions": self.list_task_definitions,
            "ListTaskDefinitionFamilies": self.list_task_definition_families,
            "RunTask": self.run_task, "StartTask": self.start_task, "StopTask": self.stop_task,
            "DescribeTasks": self.describe_tasks, "ListTasks": self.list_tasks,
        }

    def register(self, front: Front) -> None:
        for name, operation in self._ops.items():
            front.register("ecs", name, _handler(operation))

    # -- clusters -------------------------------------------------------------------------------------------------

    def _cluster_record(self, name: str, tags: list[Any] | None = None) -> Record:
        return {"clusterArn": self._arns.cluster(name), "clusterName": name, "status": "ACTIVE", "tags": tags or [],
                "settings": [{"name": "containerInsights", "value": "disabled"}], "capacityProviders": [],
                "defaultCapacityProviderStrategy": [], "attachments": []}

    async def _cluster(self, value: Any) -> Record:
        """The cluster a request names (a name or an ARN; none: ``default``); ClusterNotFoundException."""
        name = self._arns.name_of(value, "cluster") if value else DEFAULT_CLUSTER
        if name is None or not NAME_RE.fullmatch(name):
            raise ClusterNotFound("Cluster not found.")
        found, _ = await self._records.ecs.get(records.cluster_key(name))
        if found is None or found.get("status") != "ACTIVE":
            if name == DEFAULT_CLUSTER:
                return self._cluster_record(name)
            raise ClusterNotFound("Cluster not found.")
        return found

    async def _tasks(self) -> list[Record]:
        return await self._records.tasks.values("")

    async def _with_counts(self, cluster: Record, tasks: list[Record] | None = None) -> Record:
        tasks = await self._tasks() if tasks is None else tasks
        mine = [t for t in tasks if t["clusterArn"] == cluster["clusterArn"]]
        return {**cluster, "runningTasksCount": sum(t["lastStatus"] == "RUNNING" for t in mine),
                "pendingTasksCount": sum(t["lastStatus"] in ("PROVISIONING", "PENDING") for t in mine),
                "activeServicesCount": 0, "registeredContainerInstancesCount": 0}

    async def create_cluster(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("clusterName") or DEFAULT_CLUSTER
        if not NAME_RE.fullmatch(name):
            raise InvalidParameter("Cluster name can only contain letters, numbers, hyphens and underscores, "
                                   "up to 255 characters")

        def create(current: Record | None) -> Record:
            if current is not None and current.get("status") == "ACTIVE":
                return current  # CreateCluster of an existing cluster returns it, as on AWS
            return self._cluster_record(name, body.get("tags"))

        cluster = await self._records.ecs.update(records.cluster_key(name), create)
        assert cluster is not None
        return {"cluster": await self._with_counts(cluster, [])}

    async def describe_clusters(self, body: dict[str, Any]) -> dict[str, Any]:
        found, failures = [], []
        tasks = await self._tasks()
        for value in body.get("clusters") or [DEFAULT_CLUSTER]:
            try:
                found.append(await self._with_counts(await self._cluster(value), tasks))
            except ClusterNotFound:
                arn = value if value.startswith("arn:") else self._arns.cluster(value)
                failures.append({"arn": arn, "reason": "MISSING"})
        return {"clusters": found, "failures": failures}

    async def list_clusters(self, body: dict[str, Any]) -> dict[str, Any]:
        clusters = [c["clusterArn"] for c in await self._records.ecs.values("cluster.") if c.get("status") == "ACTIVE"]
        if self._arns.cluster(DEFAULT_CLUSTER) not in clusters:
            clusters.insert(0, self._arns.cluster(DEFAULT_CLUSTER))
        page, more = _page(clusters, body)
        return {"clusterArns": page, **({"nextToken": more} if more else {})}

    async def delete_cluster(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = await self._cluster(body.get("cluster"))
        tasks = [t for t in await self._tasks() if t["clusterArn"] == cluster["clusterArn"]
                 and t["lastStatus"] != "STOPPED"]
        if tasks:
            raise ClusterContainsTasks("The Cluster cannot be deleted while Tasks are active.")
        await self._records.ecs.delete(records.cluster_key(cluster["clusterName"]))
        return {"cluster": {**cluster, "status": "INACTIVE", "runningTasksCount": 0, "pendingTasksCount": 0}}

    # -- task definitions -----------------------------------------------------------------------------------------

    def _containers(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        definitions = body.get("containerDefinitions")
        if not definitions:
            raise ClientError("Container list cannot be empty.")
        names: set[str] = set()
        out = []
        for container in definitions:
            name = container.get("name")
            if not name or not NAME_RE.fullmatch(name):
                raise ClientError("Container.name should not be null or empty and may contain only letters, "
                                  "numbers, hyphens and underscores.")
            if name in names:
                raise ClientError(f"Duplicate container name found: {name}.")
            names.add(name)
            if not container.get("image"):
                raise ClientError("Container.image should not be null or empty.")
            memory, reservation = container.get("memory"), container.get("memoryReservation")
            if memory is not None and memory < 6:
                raise ClientError(f"Invalid 'memory' setting for container '{name}'. Must be at least 6 MiB.")
            if memory is not None and reservation is not None and reservation > memory:
                raise ClientError(f"Invalid 'memoryReservation' setting for container '{name}'. Must be less than "
                                  "the hard 'memory' limit.")
            container = {"essential": True, "portMappings": [], "environment": [], "mountPoints": [],
                         "volumesFrom": [], **container}
            for mapping in container["portMappings"]:
                mapping.setdefault("protocol", "tcp")
                if "hostPort" not in mapping and "containerPort" in mapping:
                    mapping["hostPort"] = mapping["containerPort"]
            out.append(container)
        if not any(c["essential"] for c in out):
            raise ClientError("Task definition does not have any essential container.")
        for container in out:
            for dependency in container.get("dependsOn") or []:
                if dependency.get("containerName") not in names:
                    raise ClientError(f"Container '{container['name']}' depends on an unknown container "
                                      f"'{dependency.get('containerName')}'.")
                if dependency.get("condition", "START") not in CONDITIONS:
                    raise ClientError(f"Invalid dependsOn condition {dependency.get('condition')}.")
        return out

    async def register_task_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        family = body.get("family") or ""
        if not NAME_RE.fullmatch(family):
            raise ClientError("Family contains invalid characters: up to 255 letters (uppercase and lowercase), "
                              "numbers, hyphens and underscores are allowed.")
        containers = self._containers(body)
        cpu, memory = _int_text(body.get("cpu"), "cpu"), _int_text(body.get("memory"), "memory")
        requires = body.get("requiresCompatibilities") or []
        if "FARGATE" in requires and (cpu is None or memory is None):
            raise ClientError("Fargate requires that 'cpu' and 'memory' be defined at the task level.")
        if "FARGATE" in requires and body.get("networkMode", "awsvpc") != "awsvpc":
            raise ClientError("Fargate only supports network mode 'awsvpc'.")
        revision = 0

        def bump(current: Record | None) -> Record:
            nonlocal revision
            revision = int((current or {}).get("last", 0)) + 1
            return {"family": family, "last": revision}

        await self._records.ecs.update(records.family_key(family), bump)
        definition: Record = {
            "taskDefinitionArn": self._arns.definition(family, revision), "family": family, "revision": revision,
            "containerDefinitions": containers, "status": "ACTIVE", "volumes": body.get("volumes") or [],
            "requiresAttributes": [], "placementConstraints": body.get("placementConstraints") or [],
            "compatibilities": ["EC2", "FARGATE"], "requiresCompatibilities": requires,
            "networkMode": body.get("networkMode") or ("awsvpc" if "FARGATE" in requires else "bridge"),
            "registeredAt": self._clock(), "registeredBy": f"arn:aws:iam::{self._arns.account}:root",
        }
        for key in ("taskRoleArn", "executionRoleArn", "pidMode", "ipcMode", "runtimePlatform", "ephemeralStorage"):
            if body.get(key):
                definition[key] = body[key]
        if cpu:
            definition["cpu"] = cpu
        if memory:
            definition["memory"] = memory
        await self._records.ecs.put(records.definition_key(family, revision),
                                    {"definition": definition, "tags": body.get("tags") or []})
        return {"taskDefinition": definition, "tags": body.get("tags") or []}

    async def _definition(self, value: Any, active_only: bool = False) -> Record:
        """A stored definition (``family``, ``family:revision`` or its ARN); ClientException when there is none."""
        text = self._arns.name_of(value, "task-definition") if isinstance(value, str) and value else None
        if text is None:
            raise ClientError("Unable to describe task definition.")
        family, _, revision = text.partition(":")
        if not NAME_RE.fullmatch(family) or (revision and not revision.isdigit()):
            raise ClientError("Unable to describe task definition.")
        if not revision:
            stored = [d for d in await self._records.ecs.values(f"def.{family}.")
                      if d["definition"]["status"] == "ACTIVE"]
            if not stored:
                raise ClientError("Unable to describe task definition.")
            return max(stored, key=lambda d: d["definition"]["revision"])
        found, _ = await self._records.ecs.get(records.definition_key(family, int(revision)))
        if found is None:
            raise ClientError("Unable to describe task definition.")
        if active_only and found["definition"]["status"] != "ACTIVE":
            raise ClientError("TaskDefinition is inactive")
        return found

    async def describe_task_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        found = await self._definition(body.get("taskDefinition"))
        include_tags = "TAGS" in (body.get("include") or [])
        return {"taskDefinition": found["definition"], **({"tags": found["tags"]} if include_tags else {})}

    async def deregister_task_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        value = body.get("taskDefinition")
        text = self._arns.name_of(value, "task-definition") if isinstance(value, str) else None
        if not text or ":" not in text:
            raise ClientError("The specified task definition does not exist (a revision is required).")
        found = await self._definition(value)
        definition = {**found["definition"], "status": "INACTIVE", "deregisteredAt": self._clock()}
        key = records.definition_key(definition["family"], definition["revision"])
        await self._records.ecs.put(key, {**found, "definition": definition})
        return {"taskDefinition": definition}

    async def _all_definitions(self) -> list[Record]:
        return [d["definition"] for d in await self._records.ecs.values("def.")]

    async def list_task_definitions(self, body: dict[str, Any]) -> dict[str, Any]:
        status = body.get("status") or "ACTIVE"
        prefix = body.get("familyPrefix")
        found = [d for d in await self._all_definitions() if d["status"] == status
                 and (not prefix or d["family"] == prefix)]
        found.sort(key=lambda d: (d["family"], d["revision"]), reverse=body.get("sort") == "DESC")
        page, more = _page([d["taskDefinitionArn"] for d in found], body)
        return {"taskDefinitionArns": page, **({"nextToken": more} if more else {})}

    async def list_task_definition_families(self, body: dict[str, Any]) -> dict[str, Any]:
        status = body.get("status") or "ACTIVE"
        prefix = body.get("familyPrefix") or ""
        families: dict[str, bool] = {}
        for definition in await self._all_definitions():
            active = definition["status"] == "ACTIVE"
            families[definition["family"]] = families.get(definition["family"], False) or active
        names = sorted(f for f, active in families.items() if f.startswith(prefix) and (
            status == "ALL" or (status == "ACTIVE") == active))
        page, more = _page(names, body)
        return {"families": page, **({"nextToken": more} if more else {})}

    # -- tasks ----------------------------------------------------------------------------------------------------

    async def run_task(self, body: dict[str, Any]) -> dict[str, Any]:
        count = body.get("count", 1)
        if not 1 <= count <= MAX_COUNT:
            raise InvalidParameter(f"count must be between 1 and {MAX_COUNT}.")
        launch_type = body.get("launchType") or "FARGATE"
        if launch_type not in LAUNCH_TYPES:
            raise InvalidParameter(f"launchType must be one of {', '.join(LAUNCH_TYPES)}.")
        return await self._start(body, count, launch_type)

    async def start_task(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("containerInstances"):
            raise InvalidParameter("containerInstances can not be blank.")
        return await self._start(body, 1, "EC2")

    async def _start(self, body: dict[str, Any], count: int, launch_type: str) -> dict[str, Any]:
        cluster = await self._cluster(body.get("cluster"))
        stored = await self._definition(body.get("taskDefinition"), active_only=True)
        definition = stored["definition"]
        overrides = body.get("overrides") or {}
        names = {c["name"] for c in definition["containerDefinitions"]}
        for override in overrides.get("containerOverrides") or []:
            if override.get("name") not in names:
                raise InvalidParameter(f"Override for container named {override.get('name')} is not a container in "
                                       "the TaskDefinition.")
        started_by = body.get("startedBy")
        if started_by is not None and len(started_by) > 128:
            raise InvalidParameter("startedBy may be up to 128 characters.")
        tags = body.get("tags") or []
        if body.get("propagateTags") == "TASK_DEFINITION" and not tags:
            tags = stored["tags"]
        out = []
        for _ in range(count):
            task = self._task_record(cluster["clusterName"], definition, overrides, launch_type, started_by, tags,
                                     body.get("group"))
            task_id = task[PRIVATE]["id"]
            await self._records.tasks.create(task_id, task)
            await self._js.publish(records.run_subject(task_id), orjson.dumps({"t": task_id}),
                                   headers={"Nats-Msg-Id": task_id}, timeout=10)
            out.append(records.public(task))
        return {"tasks": out, "failures": []}

    def _task_record(self, cluster: str, definition: Record, overrides: dict[str, Any], launch_type: str,
                     started_by: str | None, tags: list[Any], group: str | None) -> Record:
        task_id = records.new_task_id()
        task_arn = self._arns.task(cluster, task_id)
        by_name = {o.get("name"): o for o in overrides.get("containerOverrides") or []}
        containers = []
        for container in definition["containerDefinitions"]:
            entry: Record = {"containerArn": self._arns.container(cluster, task_id), "taskArn": task_arn,
                             "name": container["name"], "image": container["image"], "lastStatus": "PENDING",
                             "networkInterfaces": [], "networkBindings": [], "healthStatus": "UNKNOWN",
                             "cpu": str(container.get("cpu", 0))}
            memory = (by_name.get(container["name"]) or {}).get("memory") or container.get("memory")
            if memory:
                entry["memory"] = str(memory)
            if container.get("memoryReservation"):
                entry["memoryReservation"] = str(container["memoryReservation"])
            containers.append(entry)
        task: Record = {
            "taskArn": task_arn, "clusterArn": self._arns.cluster(cluster),
            "taskDefinitionArn": definition["taskDefinitionArn"], "lastStatus": "PROVISIONING",
            "desiredStatus": "RUNNING", "containers": containers, "createdAt": self._clock(),
            "group": group or f"family:{definition['family']}", "launchType": launch_type, "version": 1,
            "overrides": {"containerOverrides": overrides.get("containerOverrides") or [],
                          "inferenceAcceleratorOverrides": [],
                          **{k: overrides[k] for k in ("cpu", "memory", "taskRoleArn", "executionRoleArn")
                             if overrides.get(k)}},
            "tags": tags, "attachments": [], "attributes": [], "availabilityZone": f"{self._arns.region}a",
            "healthStatus": "UNKNOWN", "enableExecuteCommand": False,
            PRIVATE: {"id": task_id, "cluster": cluster, "family": definition["family"],
                      "revision": definition["revision"], "definition": definition, "owner": ""},
        }
        for key in ("cpu", "memory"):
            value = overrides.get(key) or definition.get(key)
            if value:
                task[key] = str(value)
        if launch_type == "FARGATE":
            task["platformVersion"], task["platformFamily"] = FARGATE_PLATFORM, "Linux"
        if started_by:
            task["startedBy"] = started_by
        return task

    async def _task(self, cluster: Record, value: Any) -> Record | None:
        if not isinstance(value, str) or not value:
            return None
        task_id = value.rsplit("/", 1)[-1] if value.startswith("arn:") else value
        if not task_id.isalnum():
            return None
        found, _ = await self._records.tasks.get(task_id)
        if found is None or found["clusterArn"] != cluster["clusterArn"]:
            return None
        return found

    async def stop_task(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = await self._cluster(body.get("cluster"))
        task = await self._task(cluster, body.get("task"))
        if task is None:
            raise InvalidParameter("The referenced task was not found.")
        reason = body.get("reason") or "Task stopped by user"
        if len(reason) > 255:
            raise InvalidParameter("reason may be up to 255 characters.")
        now = self._clock()

        def stopping(current: Record | None) -> Record | None:
            if current is None or current["desiredStatus"] == "STOPPED":
                return current
            return {**current, "desiredStatus": "STOPPED", "stoppedReason": reason, "stopCode": "UserInitiated",
                    "stoppingAt": now}

        updated = await self._records.tasks.update(task[PRIVATE]["id"], stopping)
        await self._nc.publish(records.stop_subject(task[PRIVATE]["id"]), orjson.dumps({"reason": reason}))
        return {"task": records.public(updated or task)}

    async def describe_tasks(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = await self._cluster(body.get("cluster"))
        wanted = body.get("tasks") or []
        if not wanted:
            raise InvalidParameter("Tasks cannot be empty.")
        if len(wanted) > 100:
            raise InvalidParameter("Tasks can have at most 100 items.")
        found, failures = [], []
        for value in wanted:
            task = await self._task(cluster, value)
            if task is None:
                failures.append({"arn": value if str(value).startswith("arn:") else
                                 self._arns.task(cluster["clusterName"], str(value)), "reason": "MISSING"})
            else:
                found.append(records.public(task))
        return {"tasks": found, "failures": failures}

    async def list_tasks(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = await self._cluster(body.get("cluster"))
        if body.get("family") and body.get("serviceName"):
            raise InvalidParameter("family and serviceName cannot both be given.")
        desired = body.get("desiredStatus") or "RUNNING"
        family = body.get("family")
        tasks = [t for t in await self._tasks() if t["clusterArn"] == cluster["clusterArn"]
                 and t["desiredStatus"] == desired
                 and (not family or t[PRIVATE]["family"] == family)
                 and (not body.get("startedBy") or t.get("startedBy") == body["startedBy"])
                 and (not body.get("launchType") or t.get("launchType") == body["launchType"])]
        if body.get("serviceName"):
            tasks = []  # services are not run yet
        tasks.sort(key=lambda t: t["createdAt"])
        page, more = _page([t["taskArn"] for t in tasks], body)
        return {"taskArns": page, **({"nextToken": more} if more else {})}


def _handler(operation: Operation) -> Handler:
    async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await operation(params)

    return handle
