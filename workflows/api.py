"""AWS Step Functions' API on the front door (JSON 1.0, ``X-Amz-Target: AWSStepFunctions.<Op>``):
``boto3.client("stepfunctions")`` works unchanged.

State machines, versions, aliases and activities live in the ``kambda_sfn`` bucket (workflows/records.py),
executions' records in ``kambda_sfn_executions``, their histories on ``KAMBDA_SFN_HISTORY``. This module writes
what an execution starts from (workflows/executions.py), stops and redrives it (an event appended
compare-and-set, as the executor appends), answers task tokens (a ``wake`` message on the work stream), serves
activity workers' long polls, and runs EXPRESS executions for StartSyncExecution itself (workflows/express.py).
The executor (workflows/executor.py, in the worker tier) does the rest.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from kambda import bus
from kambda.aws.front import Context, Front, Handler
from kambda.names import Arns
from workflows import errors, executions, express, history, language, teststate
from workflows.history import Event
from workflows.interpreter import parse_token
from workflows.records import (
    NAME_RE,
    Records,
    activity_key,
    alias_key,
    execution_id,
    execution_key,
    machine_key,
    name_key,
    token_key,
    version_key,
)
from workflows.registry import ACTIVITY_RE, parse_arn, parse_execution_arn, resolve_machine
from workflows.sdk import AwsSdk
from workflows.tasks import LambdaResult

log = logging.getLogger(__name__)

Operation = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
CallLambda = Callable[[str, bytes, int | None], Awaitable[LambdaResult]]
MAX_PAYLOAD = 256 * 1024
ACTIVITY_POLL_S = 60.0
MAX_TAGS = 50
REDRIVE_DAYS = 14
TYPES = ("STANDARD", "EXPRESS")


def _page(items: list[Any], body: dict[str, Any], default: int = 100) -> tuple[list[Any], str | None]:
    size = body.get("maxResults") or default
    token = body.get("nextToken")
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except (ValueError, UnicodeDecodeError):
        raise errors.Validation("Invalid pagination token") from None
    end = start + min(int(size), 1000)
    more = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], more


def _name(value: Any, what: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise errors.InvalidName(f"Invalid Name: '{value}'")
    return value


def _json_text(value: Any, error: type[errors.SfnError], what: str) -> str:
    text = "{}" if value is None else value
    if len(text.encode()) > MAX_PAYLOAD:
        raise error(f"Invalid {what}: 'Size of the {what.lower()} exceeds the maximum of 262144 bytes'")
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise error(f"Invalid {what}: 'Invalid JSON {what.lower()}: {exc}'") from None
    return str(text)


def _tags(tags: Any) -> dict[str, str]:
    out = {}
    for tag in tags or []:
        out[str(tag.get("key"))] = str(tag.get("value", ""))
    if len(out) > MAX_TAGS:
        raise errors.TooManyTags(f"Too many tags: at most {MAX_TAGS}")
    return out


class StepFunctionsApi:
    def __init__(self, nc: NATS, records: Records, arns: Arns, call_lambda: CallLambda,
                 sdk: AwsSdk | None = None) -> None:
        self._nc = nc
        self._sdk = sdk
        self._js = nc.jetstream()
        self._records = records
        self._arns = arns
        self._call_lambda = call_lambda
        self._ops: dict[str, Operation] = {
            "CreateStateMachine": self.create_state_machine, "DescribeStateMachine": self.describe_state_machine,
            "UpdateStateMachine": self.update_state_machine, "DeleteStateMachine": self.delete_state_machine,
            "ListStateMachines": self.list_state_machines,
            "ValidateStateMachineDefinition": self.validate_definition,
            "StartExecution": self.start_execution, "StartSyncExecution": self.start_sync_execution,
            "DescribeExecution": self.describe_execution, "StopExecution": self.stop_execution,
            "ListExecutions": self.list_executions, "GetExecutionHistory": self.get_execution_history,
            "DescribeStateMachineForExecution": self.describe_for_execution,
            "RedriveExecution": self.redrive_execution,
            "TagResource": self.tag_resource, "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags,
            "PublishStateMachineVersion": self.publish_version, "ListStateMachineVersions": self.list_versions,
            "DeleteStateMachineVersion": self.delete_version,
            "CreateStateMachineAlias": self.create_alias, "DescribeStateMachineAlias": self.describe_alias,
            "UpdateStateMachineAlias": self.update_alias, "DeleteStateMachineAlias": self.delete_alias,
            "ListStateMachineAliases": self.list_aliases,
            "CreateActivity": self.create_activity, "DescribeActivity": self.describe_activity,
            "DeleteActivity": self.delete_activity, "ListActivities": self.list_activities,
            "GetActivityTask": self.get_activity_task,
            "SendTaskSuccess": self.send_task_success, "SendTaskFailure": self.send_task_failure,
            "SendTaskHeartbeat": self.send_task_heartbeat, "TestState": self.test_state,
        }

    def register(self, front: Front) -> None:
        for name, operation in self._ops.items():
            front.register("stepfunctions", name, _handler(operation), _resources)

    # -- state machines -------------------------------------------------------------------------------------------

    def machine_arn(self, name: str) -> str:
        return f"arn:aws:states:{self._arns.region}:{self._arns.account}:stateMachine:{name}"

    def _definition(self, definition: Any) -> str:
        if not isinstance(definition, str):
            raise errors.InvalidDefinition("Invalid State Machine Definition: 'definition must be a string'")
        try:
            language.parse(definition)
        except language.InvalidDefinition as exc:
            raise errors.InvalidDefinition(str(exc)) from None
        return definition

    async def _machine(self, arn: Any) -> tuple[str, dict[str, Any]]:
        name, qualifier = parse_arn(arn)
        machine, _ = await self._records.machines.get(machine_key(name))
        if machine is None or qualifier is not None:
            if machine is not None:
                raise errors.InvalidArn(f"Invalid Arn: 'Resource type not valid in this context: {arn}'")
            raise errors.StateMachineDoesNotExist(f"State Machine Does Not Exist: '{arn}'")
        return name, machine

    async def create_state_machine(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body.get("name"))
        definition = self._definition(body.get("definition"))
        kind = body.get("type") or "STANDARD"
        if kind not in TYPES:
            raise errors.Validation(f"1 validation error detected: Value '{kind}' at 'type' failed to satisfy "
                                    "constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]")
        arn = self.machine_arn(name)
        now = time.time()
        record = {"name": name, "stateMachineArn": arn, "definition": definition,
                  "roleArn": body.get("roleArn", ""), "type": kind, "creationDate": now, "status": "ACTIVE",
                  "loggingConfiguration": body.get("loggingConfiguration") or {"level": "OFF",
                                                                                  "includeExecutionData": False},
                  "tracingConfiguration": body.get("tracingConfiguration") or {"enabled": False},
                  "revisionId": str(uuid.uuid4()), "description": body.get("versionDescription", ""),
                  "tags": _tags(body.get("tags")), "nextVersion": 1}
        if not await self._records.machines.create(machine_key(name), record):
            existing, _ = await self._records.machines.get(machine_key(name))
            if existing is None or (existing["definition"], existing["roleArn"], existing["type"]) != \
                    (definition, record["roleArn"], kind):
                raise errors.StateMachineAlreadyExists(f"State Machine Already Exists: '{arn}'")
            return {"stateMachineArn": arn, "creationDate": existing["creationDate"]}
        out: dict[str, Any] = {"stateMachineArn": arn, "creationDate": now}
        if body.get("publish"):
            version = await self._publish(name, None, body.get("versionDescription"))
            out["stateMachineVersionArn"] = version["stateMachineVersionArn"]
        return out

    async def describe_state_machine(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body.get("stateMachineArn")
        name, qualifier = parse_arn(arn)
        machine, _ = await self._records.machines.get(machine_key(name))
        if machine is None:
            raise errors.StateMachineDoesNotExist(f"State Machine Does Not Exist: '{arn}'")
        out = {key: machine[key] for key in ("name", "stateMachineArn", "definition", "roleArn", "type",
                                             "creationDate", "status", "loggingConfiguration",
                                             "tracingConfiguration", "revisionId")}
        if qualifier is not None:
            if not qualifier.isdigit():
                raise errors.InvalidArn(f"Invalid Arn: 'Resource type not valid in this context: {arn}'")
            version, _ = await self._records.machines.get(version_key(name, int(qualifier)))
            if version is None:
                raise errors.StateMachineDoesNotExist(f"State Machine Does Not Exist: '{arn}'")
            out.update(stateMachineArn=arn, definition=version["definition"], roleArn=version["roleArn"],
                       creationDate=version["creationDate"], revisionId=version["revisionId"])
            if version.get("description"):
                out["description"] = version["description"]
        return out

    async def update_state_machine(self, body: dict[str, Any]) -> dict[str, Any]:
        name, _ = await self._machine(body.get("stateMachineArn"))
        changes: dict[str, Any] = {}
        if body.get("definition") is not None:
            changes["definition"] = self._definition(body["definition"])
        for key in ("roleArn", "loggingConfiguration", "tracingConfiguration"):
            if body.get(key) is not None:
                changes[key] = body[key]
        if not changes and not body.get("publish"):
            raise errors.MissingRequiredParameter("Either the definition, the roleArn, the loggingConfiguration "
                                                  "or the tracingConfiguration must be specified")
        now = time.time()

        def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None:
                raise errors.StateMachineDoesNotExist(f"State Machine Does Not Exist: '{body['stateMachineArn']}'")
            revised = {**current, **changes, "updateDate": now}
            if any(current.get(k) != v for k, v in changes.items()):
                revised["revisionId"] = str(uuid.uuid4())
            return revised

        machine = await self._records.machines.update(machine_key(name), change)
        assert machine is not None
        out: dict[str, Any] = {"updateDate": now, "revisionId": machine["revisionId"]}
        if body.get("publish"):
            version = await self._publish(name, None, body.get("versionDescription"))
            out["stateMachineVersionArn"] = version["stateMachineVersionArn"]
        return out

    async def delete_state_machine(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body.get("stateMachineArn")
        name, qualifier = parse_arn(arn)
        if qualifier is not None:
            raise errors.Validation(f"Invalid Arn: 'Use DeleteStateMachineVersion or DeleteStateMachineAlias "
                                    f"for {arn}'")
        key = name_key(name)
        for sub in await self._records.machines.keys(f"ver.{key}.") + await self._records.machines.keys(
                f"alias.{key}."):
            await self._records.machines.delete(sub)
        await self._records.machines.delete(machine_key(name))
        return {}

    async def list_state_machines(self, body: dict[str, Any]) -> dict[str, Any]:
        machines = await self._records.machines.values("sm.")
        machines.sort(key=lambda m: m["name"])
        page, token = _page(machines, body)
        out: dict[str, Any] = {"stateMachines": [{k: m[k] for k in ("stateMachineArn", "name", "type",
                                                                      "creationDate")} for m in page]}
        if token:
            out["nextToken"] = token
        return out

    async def validate_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        definition = body.get("definition")
        if not isinstance(definition, str):
            raise errors.Validation("definition must be a string")
        diagnostics = language.validate(definition)
        severity = body.get("severity") or "ERROR"
        if severity == "ERROR":
            diagnostics = [d for d in diagnostics if d.severity == "ERROR"]
        limit = body.get("maxResults") or 100
        failed = any(d.severity == "ERROR" for d in diagnostics)
        return {"result": "FAIL" if failed else "OK", "diagnostics": [d.as_aws() for d in diagnostics[:limit]],
                "truncated": len(diagnostics) > limit}

    # -- versions and aliases -------------------------------------------------------------------------------------

    async def _publish(self, name: str, revision: str | None, description: str | None) -> dict[str, Any]:
        machine, _ = await self._records.machines.get(machine_key(name))
        if machine is None:
            raise errors.StateMachineDoesNotExist(f"State Machine Does Not Exist: '{self.machine_arn(name)}'")
        if revision and revision != machine["revisionId"]:
            raise errors.Conflict(f"Failed to publish the State Machine version for revision {revision}. The "
                                  f"current State Machine revision is {machine['revisionId']}.")
        for existing in await self._records.machines.values(f"ver.{name_key(name)}."):
            if existing["revisionId"] == machine["revisionId"]:
                return existing
        number = 0

        def bump(current: dict[str, Any] | None) -> dict[str, Any] | None:
            nonlocal number
            if current is None:
                raise errors.StateMachineDoesNotExist(f"State Machine Does Not Exist: '{self.machine_arn(name)}'")
            number = int(current.get("nextVersion", 1))
            return {**current, "nextVersion": number + 1}

        current = await self._records.machines.update(machine_key(name), bump)
        assert current is not None
        version = {"stateMachineVersionArn": f"{current['stateMachineArn']}:{number}", "version": number,
                   "definition": current["definition"], "roleArn": current["roleArn"],
                   "revisionId": current["revisionId"], "creationDate": time.time(),
                   "description": description or ""}
        await self._records.machines.put(version_key(name, number), version)
        return version

    async def publish_version(self, body: dict[str, Any]) -> dict[str, Any]:
        name, _ = await self._machine(body.get("stateMachineArn"))
        version = await self._publish(name, body.get("revisionId"), body.get("description"))
        return {"creationDate": version["creationDate"], "stateMachineVersionArn": version["stateMachineVersionArn"]}

    async def list_versions(self, body: dict[str, Any]) -> dict[str, Any]:
        name, _ = await self._machine(body.get("stateMachineArn"))
        versions = await self._records.machines.values(f"ver.{name_key(name)}.")
        versions.sort(key=lambda v: -v["version"])
        page, token = _page(versions, body)
        out: dict[str, Any] = {"stateMachineVersions": [{"stateMachineVersionArn": v["stateMachineVersionArn"],
                                                          "creationDate": v["creationDate"]} for v in page]}
        if token:
            out["nextToken"] = token
        return out

    async def delete_version(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body.get("stateMachineVersionArn")
        name, qualifier = parse_arn(arn)
        if qualifier is None or not qualifier.isdigit():
            raise errors.InvalidArn(f"Invalid Arn: '{arn}'")
        for alias in await self._records.machines.values(f"alias.{name_key(name)}."):
            if any(r["stateMachineVersionArn"] == arn for r in alias["routingConfiguration"]):
                raise errors.Conflict(f"Version {arn} is referenced by alias {alias['stateMachineAliasArn']}")
        await self._records.machines.delete(version_key(name, int(qualifier)))
        return {}

    async def _routing(self, name: str, routing: Any) -> list[dict[str, Any]]:
        if not isinstance(routing, list) or not 1 <= len(routing) <= 2:
            raise errors.Validation("routingConfiguration must name one or two versions")
        if sum(int(r.get("weight", -1)) for r in routing) != 100 or any(
                not 0 <= int(r.get("weight", -1)) <= 100 for r in routing):
            raise errors.Validation("The weights of routingConfiguration must add up to 100")
        out = []
        for route in routing:
            arn = route.get("stateMachineVersionArn")
            version_name, qualifier = parse_arn(arn)
            if version_name != name or qualifier is None or not qualifier.isdigit():
                raise errors.Validation(f"Invalid version ARN in routingConfiguration: {arn}")
            if (await self._records.machines.get(version_key(name, int(qualifier))))[0] is None:
                raise errors.ResourceNotFound(f"Resource not found: '{arn}'")
            out.append({"stateMachineVersionArn": arn, "weight": int(route["weight"])})
        if len({r["stateMachineVersionArn"] for r in out}) != len(out):
            raise errors.Validation("routingConfiguration names a version twice")
        return out

    async def create_alias(self, body: dict[str, Any]) -> dict[str, Any]:
        alias = _name(body.get("name"))
        if alias.isdigit():
            raise errors.InvalidName(f"Invalid Name: '{alias}'")
        routing = body.get("routingConfiguration") or []
        first = routing[0].get("stateMachineVersionArn") if routing and isinstance(routing[0], dict) else None
        name, _ = parse_arn(first, "stateMachineVersionArn")
        routes = await self._routing(name, routing)
        arn = f"{self.machine_arn(name)}:{alias}"
        now = time.time()
        record = {"name": alias, "stateMachineAliasArn": arn, "description": body.get("description", ""),
                  "routingConfiguration": routes, "creationDate": now, "updateDate": now}
        if not await self._records.machines.create(alias_key(name, alias), record):
            existing, _ = await self._records.machines.get(alias_key(name, alias))
            if existing is None or existing["routingConfiguration"] != routes or \
                    existing["description"] != record["description"]:
                raise errors.Conflict(f"Alias {arn} already exists")
            now = existing["creationDate"]
        return {"stateMachineAliasArn": arn, "creationDate": now}

    async def _alias(self, arn: Any) -> tuple[str, str, dict[str, Any]]:
        name, qualifier = parse_arn(arn)
        if qualifier is None or qualifier.isdigit():
            raise errors.InvalidArn(f"Invalid Arn: '{arn}'")
        record, _ = await self._records.machines.get(alias_key(name, qualifier))
        if record is None:
            raise errors.ResourceNotFound(f"Resource not found: '{arn}'")
        return name, qualifier, record

    async def describe_alias(self, body: dict[str, Any]) -> dict[str, Any]:
        _, _, record = await self._alias(body.get("stateMachineAliasArn"))
        return {k: record[k] for k in ("stateMachineAliasArn", "name", "description", "routingConfiguration",
                                       "creationDate", "updateDate")}

    async def update_alias(self, body: dict[str, Any]) -> dict[str, Any]:
        name, alias, _ = await self._alias(body.get("stateMachineAliasArn"))
        changes: dict[str, Any] = {}
        if body.get("routingConfiguration") is not None:
            changes["routingConfiguration"] = await self._routing(name, body["routingConfiguration"])
        if body.get("description") is not None:
            changes["description"] = body["description"]
        now = time.time()
        await self._records.machines.update(alias_key(name, alias),
                                            lambda current: {**(current or {}), **changes, "updateDate": now})
        return {"updateDate": now}

    async def delete_alias(self, body: dict[str, Any]) -> dict[str, Any]:
        name, alias, _ = await self._alias(body.get("stateMachineAliasArn"))
        await self._records.machines.delete(alias_key(name, alias))
        return {}

    async def list_aliases(self, body: dict[str, Any]) -> dict[str, Any]:
        name, _ = await self._machine(body.get("stateMachineArn"))
        aliases = sorted(await self._records.machines.values(f"alias.{name_key(name)}."), key=lambda a: a["name"])
        page, token = _page(aliases, body)
        out: dict[str, Any] = {"stateMachineAliases": [{"stateMachineAliasArn": a["stateMachineAliasArn"],
                                                        "creationDate": a["creationDate"]} for a in page]}
        if token:
            out["nextToken"] = token
        return out

    # -- executions -----------------------------------------------------------------------------------------------

    async def _resolve(self, arn: Any) -> dict[str, Any]:
        parse_arn(arn)
        machine = await resolve_machine(self._records, arn)
        if machine is None:
            raise errors.StateMachineDoesNotExist(f"State Machine Does Not Exist: '{arn}'")
        return machine

    async def start_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        machine = await self._resolve(body.get("stateMachineArn"))
        name = _name(body["name"]) if body.get("name") is not None else str(uuid.uuid4())
        input_text = _json_text(body.get("input"), errors.InvalidExecutionInput, "Input")
        if machine["type"] == "EXPRESS":
            arn = executions.execution_arn(machine["arn"], name).replace(":execution:", ":express:") + \
                f":{uuid.uuid4()}"
            ident = execution_id(arn)
            await self._js.publish(bus.sfn_work_subject(ident), orjson.dumps({
                "k": "express", "e": ident, "r": "", "arn": arn, "machine": machine["arn"], "name": name,
                "definition": machine["definition"], "input": input_text, "roleArn": machine["roleArn"]}),
                timeout=10)
            return {"executionArn": arn, "startDate": time.time()}
        record = await executions.start(self._nc, self._records, machine, name, input_text)
        return {"executionArn": record["executionArn"], "startDate": record["startDate"]}

    async def start_sync_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        machine = await self._resolve(body.get("stateMachineArn"))
        if machine["type"] != "EXPRESS":
            raise errors.StateMachineTypeNotSupported("This operation is not supported by this type of state "
                                                      "machine")
        name = _name(body["name"]) if body.get("name") is not None else str(uuid.uuid4())
        input_text = _json_text(body.get("input"), errors.InvalidExecutionInput, "Input")
        arn = executions.execution_arn(machine["arn"], name).replace(":execution:", ":express:") + \
            f":{uuid.uuid4()}"
        return await express.run(self._js, self._call_lambda, machine["definition"], arn, machine["arn"], name,
                                 input_text, machine["roleArn"], self._sdk)

    async def test_state(self, body: dict[str, Any]) -> dict[str, Any]:
        return await teststate.run(self._js, self._call_lambda, body, self._arns.region, self._arns.account,
                                   self._sdk)

    async def _execution(self, arn: Any) -> dict[str, Any]:
        machine, _ = parse_execution_arn(arn)
        if ":express:" in arn:
            raise errors.ExecutionDoesNotExist(f"Execution Does Not Exist: '{arn}'")
        record, _ = await self._records.executions.get(execution_key(machine, arn))
        if record is None:
            raise errors.ExecutionDoesNotExist(f"Execution Does Not Exist: '{arn}'")
        return record

    async def describe_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        return executions.describe(await self._execution(body.get("executionArn")))

    async def describe_for_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        record = await self._execution(body.get("executionArn"))
        machine, _ = await self._records.machines.get(machine_key(executions.machine_name(record["stateMachineArn"])))
        out: dict[str, Any] = {"stateMachineArn": record["stateMachineArn"],
                               "name": executions.machine_name(record["stateMachineArn"]),
                               "definition": record["definition"], "roleArn": record.get("roleArn", ""),
                               "updateDate": (machine or {}).get("updateDate") or (machine or {}).get(
                                   "creationDate") or record["startDate"],
                               "loggingConfiguration": (machine or {}).get("loggingConfiguration") or {
                                   "level": "OFF", "includeExecutionData": False},
                               "tracingConfiguration": (machine or {}).get("tracingConfiguration") or {
                                   "enabled": False}}
        if record.get("versionArn"):
            out["stateMachineVersionArn"] = record["versionArn"]
        if record.get("aliasArn"):
            out["stateMachineAliasArn"] = record["aliasArn"]
        return out

    async def list_executions(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body.get("stateMachineArn")
        if arn is None:
            raise errors.Validation("Must provide a StateMachine ARN or MapRun ARN")
        name, qualifier = parse_arn(arn)
        machine, _ = await self._records.machines.get(machine_key(name))
        if machine is None:
            raise errors.StateMachineDoesNotExist(f"State Machine Does Not Exist: '{arn}'")
        if machine["type"] == "EXPRESS":
            raise errors.StateMachineTypeNotSupported("This operation is not supported by this type of state "
                                                      "machine")
        found = await self._records.executions.values(f"{name_key(name)}.")
        if qualifier is not None:
            found = [r for r in found if arn in (r.get("versionArn"), r.get("aliasArn"))]
        status = body.get("statusFilter")
        if status:
            found = [r for r in found if r["status"] == status]
        found.sort(key=lambda r: (-r["startDate"], r["name"]))
        page, token = _page(found, body)
        out: dict[str, Any] = {"executions": [executions.summary(r) for r in page]}
        if token:
            out["nextToken"] = token
        return out

    async def get_execution_history(self, body: dict[str, Any]) -> dict[str, Any]:
        record = await self._execution(body.get("executionArn"))
        events, _ = await history.read(self._nc, record["id"])
        include = body.get("includeExecutionData", True)
        shown = [e.aws(include is not False) for e in events]
        if body.get("reverseOrder"):
            shown.reverse()
        page, token = _page(shown, body, default=1000)
        out: dict[str, Any] = {"events": page}
        if token:
            out["nextToken"] = token
        return out

    async def _append_closing(self, record: dict[str, Any], event_type: str, details: dict[str, Any]) -> Event:
        """Append an event after the history's last one, compare-and-set (retried while the executor appends)."""
        subject = bus.sfn_history_subject(record["id"])
        for _ in range(20):
            try:
                last = await self._js.get_last_msg(bus.SFN_HISTORY_STREAM, subject, direct=True)
            except NotFoundError:
                raise errors.ExecutionDoesNotExist(f"Execution Does Not Exist: '{record['executionArn']}'") from None
            previous = orjson.loads(last.data or b"[{}]")[-1]
            if previous["y"] in executions.STATUS_OF and event_type != "ExecutionRedriven":
                return Event.of(previous)
            event = Event(previous["i"] + 1, previous["i"], time.time(), event_type, details, event_type)
            journal = history.DurableJournal(self._nc, record["id"], [], last.seq or 0)
            journal.pending.append(event)
            try:
                await journal.flush()
                return event
            except history.Superseded:
                await asyncio.sleep(0.01)
        raise errors.Conflict("The execution changed meanwhile; try again")

    async def stop_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        record = await self._execution(body.get("executionArn"))
        if record["status"] != "RUNNING":
            return {"stopDate": record.get("stopDate") or time.time()}
        details = {k: body[k] for k in ("error", "cause") if body.get(k) is not None}
        event = await self._append_closing(record, "ExecutionAborted", details)
        if event.type in executions.STATUS_OF:
            await executions.close(self._nc, self._records, record, event)
        return {"stopDate": event.ts}

    async def redrive_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        record = await self._execution(body.get("executionArn"))
        if record["status"] not in ("FAILED", "TIMED_OUT", "ABORTED") or \
                time.time() - (record.get("stopDate") or 0) > REDRIVE_DAYS * 86400:
            raise errors.ExecutionNotRedrivable(f"Execution is {record['status']} and cannot be redriven")
        if record.get("parent"):
            raise errors.ExecutionNotRedrivable("A child execution cannot be redriven by itself")
        count = record.get("redriveCount", 0) + 1
        await self._append_closing(record, "ExecutionRedriven", {"redriveCount": count})
        now = time.time()

        def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None:
                return None
            out = {**current, "status": "RUNNING", "redriveCount": count, "redriveDate": now}
            for key in ("stopDate", "output", "error", "cause"):
                out.pop(key, None)
            return out

        await self._records.executions.update(record["key"], change)
        await self._js.publish(bus.sfn_work_subject(record["id"]),
                               orjson.dumps({"k": "start", "e": record["id"], "r": record["key"]}),
                               headers={"Nats-Msg-Id": f"{record['id']}:start:{count}"}, timeout=10)
        return {"redriveDate": now}

    # -- tags -----------------------------------------------------------------------------------------------------

    async def _tagged(self, arn: Any) -> str:
        if isinstance(arn, str):
            match = ACTIVITY_RE.fullmatch(arn)
            if match is not None:
                key = activity_key(match.group(3))
                if (await self._records.machines.get(key))[0] is not None:
                    return key
                raise errors.ResourceNotFound(f"Resource not found: '{arn}'")
        name, qualifier = parse_arn(arn, "resourceArn")
        key = machine_key(name) if qualifier is None else alias_key(name, qualifier)
        if (await self._records.machines.get(key))[0] is None:
            raise errors.ResourceNotFound(f"Resource not found: '{arn}'")
        return key

    async def tag_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        key = await self._tagged(body.get("resourceArn"))
        tags = _tags(body.get("tags"))

        def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
            merged = {**(current or {}).get("tags", {}), **tags}
            if len(merged) > MAX_TAGS:
                raise errors.TooManyTags(f"Too many tags: at most {MAX_TAGS}")
            return {**(current or {}), "tags": merged}

        await self._records.machines.update(key, change)
        return {}

    async def untag_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        key = await self._tagged(body.get("resourceArn"))
        drop = set(body.get("tagKeys") or [])
        await self._records.machines.update(key, lambda current: {
            **(current or {}), "tags": {k: v for k, v in (current or {}).get("tags", {}).items() if k not in drop}})
        return {}

    async def list_tags(self, body: dict[str, Any]) -> dict[str, Any]:
        record, _ = await self._records.machines.get(await self._tagged(body.get("resourceArn")))
        return {"tags": [{"key": k, "value": v} for k, v in sorted(((record or {}).get("tags") or {}).items())]}

    # -- activities -----------------------------------------------------------------------------------------------

    def activity_arn(self, name: str) -> str:
        return f"arn:aws:states:{self._arns.region}:{self._arns.account}:activity:{name}"

    async def _activity(self, arn: Any) -> dict[str, Any]:
        match = ACTIVITY_RE.fullmatch(arn) if isinstance(arn, str) else None
        if match is None:
            raise errors.InvalidArn(f"Invalid Arn: '{arn}'")
        record, _ = await self._records.machines.get(activity_key(match.group(3)))
        if record is None:
            raise errors.ActivityDoesNotExist(f"Activity Does Not Exist: '{arn}'")
        return record

    async def create_activity(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body.get("name"))
        arn = self.activity_arn(name)
        record = {"name": name, "activityArn": arn, "creationDate": time.time(), "tags": _tags(body.get("tags"))}
        if not await self._records.machines.create(activity_key(name), record):
            existing, _ = await self._records.machines.get(activity_key(name))
            return {"activityArn": arn, "creationDate": (existing or record)["creationDate"]}
        await self._activity_consumer(name)
        return {"activityArn": arn, "creationDate": record["creationDate"]}

    async def _activity_consumer(self, name: str) -> None:
        """The durable consumer that activity workers of ``name`` pull their tasks from."""
        await self._js.add_consumer(bus.SFN_ACTIVITIES_STREAM, ConsumerConfig(
            durable_name=f"activity-{name_key(name)}", filter_subject=bus.sfn_activity_subject(name_key(name)),
            ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_waiting=4096))

    async def describe_activity(self, body: dict[str, Any]) -> dict[str, Any]:
        record = await self._activity(body.get("activityArn"))
        return {"activityArn": record["activityArn"], "name": record["name"], "creationDate": record["creationDate"]}

    async def delete_activity(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body.get("activityArn")
        match = ACTIVITY_RE.fullmatch(arn) if isinstance(arn, str) else None
        if match is None:
            raise errors.InvalidArn(f"Invalid Arn: '{arn}'")
        await self._records.machines.delete(activity_key(match.group(3)))
        return {}

    async def list_activities(self, body: dict[str, Any]) -> dict[str, Any]:
        activities = sorted(await self._records.machines.values("act."), key=lambda a: a["name"])
        page, token = _page(activities, body)
        out: dict[str, Any] = {"activities": [{"activityArn": a["activityArn"], "name": a["name"],
                                               "creationDate": a["creationDate"]} for a in page]}
        if token:
            out["nextToken"] = token
        return out

    async def get_activity_task(self, body: dict[str, Any]) -> dict[str, Any]:
        record = await self._activity(body.get("activityArn"))
        durable = f"activity-{name_key(record['name'])}"
        for attempt in range(2):
            sub = await self._js.pull_subscribe_bind(durable, stream=bus.SFN_ACTIVITIES_STREAM)
            try:
                msgs = await sub.fetch(1, timeout=ACTIVITY_POLL_S)
                break
            except TimeoutError:
                return {}
            except NotFoundError:  # its consumer is gone (a NATS that lost it): made again, polled again
                if attempt:
                    raise
                await self._activity_consumer(record["name"])
            finally:
                await sub.unsubscribe()
        await msgs[0].ack()
        task = orjson.loads(msgs[0].data)
        return {"taskToken": task["taskToken"], "input": orjson.dumps(task["input"]).decode()}

    # -- task tokens ----------------------------------------------------------------------------------------------

    async def _token(self, token: Any) -> tuple[str, str, dict[str, Any]]:
        parsed = parse_token(token) if isinstance(token, str) else None
        if parsed is None:
            raise errors.InvalidToken("Invalid Token: 'Invalid token'")
        execution, key = parsed
        record, _ = await self._records.tokens.get(token_key(execution, key))
        if record is None or record.get("status") == "ANSWERED":
            raise errors.TaskDoesNotExist("Task Does Not Exist")
        if record.get("status") == "TIMED_OUT":
            raise errors.TaskTimedOut("Task Timed Out")
        return execution, key, record

    async def _answer(self, token: Any, value: dict[str, Any]) -> dict[str, Any]:
        execution, key, record = await self._token(token)
        digest = token_key(execution, key).split(".", 1)[1]
        await self._js.publish(bus.sfn_work_subject(execution), orjson.dumps(
            {"k": "wake", "e": execution, "r": record["r"], "key": key, "value": value}),
            headers={"Nats-Msg-Id": f"{execution}:answer:{digest}"}, timeout=10)
        await self._records.tokens.update(token_key(execution, key),
                                          lambda current: {**current, "status": "ANSWERED"} if current else None)
        return {}

    async def send_task_success(self, body: dict[str, Any]) -> dict[str, Any]:
        output = _json_text(body.get("output"), errors.InvalidOutput, "Output")
        return await self._answer(body.get("taskToken"), {"output": output})

    async def send_task_failure(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._answer(body.get("taskToken"), {"error": body.get("error") or "",
                                                          "cause": body.get("cause") or ""})

    async def send_task_heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        execution, key, _ = await self._token(body.get("taskToken"))
        now = time.time()
        await self._records.tokens.update(token_key(execution, key),
                                          lambda current: {**current, "hb": now} if current else None)
        return {}


def _handler(operation: Operation) -> Handler:
    async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await operation(params)

    return handle


def _resources(ctx: Context, params: dict[str, Any]) -> set[str]:
    """The ARNs a call acts on, as IAM checks them: the state machine, execution, activity or alias it names."""
    for key in ("stateMachineArn", "executionArn", "activityArn", "stateMachineAliasArn",
                "stateMachineVersionArn", "resourceArn"):
        value = params.get(key)
        if isinstance(value, str):
            return {value}
    return {"*"}
