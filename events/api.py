"""Amazon EventBridge's API: its operations, served through the front door (kambda/aws/front.py), which parses
JSON 1.1 (``POST /`` with ``X-Amz-Target: AWSEvents.<Op>``) against botocore's model and renders results and
errors; ``boto3.client("events")`` works unchanged. Buses, rules and targets are kept in
the ``kambda_events`` KV bucket (events/store.py), written here with compare-and-set; the
workers' router and the leader's schedule ticker watch that bucket. PutEvents stores each entry
on ``kambda.events.<bus>`` (stream KAMBDA_EVENTS) and reports it accepted only once JetStream
acknowledged it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from events import input_transform as event_input
from events import patterns, schedules
from events import store as eventbus
from events.store import DEFAULT_BUS, Record, Store
from kambda import bus
from kambda.aws import errors
from kambda.aws.front import Context, Front, Handler
from kambda.bus.dispatch import Dispatcher
from kambda.names import Arns, destination_arn_error, parse_function

log = logging.getLogger(__name__)

MAX_ENTRIES = 10
MAX_PUT_EVENTS_BYTES = 256 * 1024
MAX_RETRY_ATTEMPTS = 185
Operation = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _handler(operation: Operation) -> Handler:
    async def handle(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await operation(params)

    return handle


def _str(body: dict[str, Any], key: str, required: bool = False, default: str = "") -> str:
    value = body.get(key)
    if value is None:
        if required:
            raise errors.Validation(f"1 validation error detected: Value null at '{key}' failed to satisfy "
                                    "constraint: Member must not be null")
        return default
    if not isinstance(value, str):
        raise errors.Validation(f"{key} must be a string")
    return value


def _name(value: str, what: str) -> str:
    if not eventbus.NAME_RE.fullmatch(value):
        raise errors.Validation(f"1 validation error detected: Value '{value}' at '{what}' failed to satisfy "
                                "constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+")
    return value


class EventsApi:
    def __init__(self, store: Store, dispatcher: Dispatcher, arns: Arns) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._arns = arns
        self._ops: dict[str, Operation] = {
            "PutEvents": self.put_events, "CreateEventBus": self.create_event_bus,
            "DeleteEventBus": self.delete_event_bus, "ListEventBuses": self.list_event_buses,
            "DescribeEventBus": self.describe_event_bus, "PutRule": self.put_rule,
            "DescribeRule": self.describe_rule, "ListRules": self.list_rules, "EnableRule": self.enable_rule,
            "DisableRule": self.disable_rule, "DeleteRule": self.delete_rule, "PutTargets": self.put_targets,
            "RemoveTargets": self.remove_targets, "ListTargetsByRule": self.list_targets_by_rule,
            "TestEventPattern": self.test_event_pattern,
        }

    def register(self, front: Front) -> None:
        """Serve every operation through the front door (kambda/aws/front.py), each authorized on the ARNs
        its params name."""
        for name, operation in self._ops.items():
            front.register("events", name, _handler(operation), self._resources_of(name))

    def _resources_of(self, operation: str) -> Callable[[Context, dict[str, Any]], set[str]]:
        return lambda ctx, params: self._resources(operation, params)

    def _resources(self, operation: str, body: dict[str, Any]) -> set[str]:
        """The ARNs an operation acts on, as EventBridge's IAM checks them: the buses events are put on,
        the bus of a bus operation, the rule of a rule or target operation, ``*`` for the rest."""
        if operation == "PutEvents":
            entries = body.get("Entries")
            buses = {self._bus_name(entry) for entry in entries if isinstance(entry, dict)} \
                if isinstance(entries, list) else set()
            return {self._arns.event_bus(bus) for bus in buses or {DEFAULT_BUS}}
        if operation in ("CreateEventBus", "DeleteEventBus", "DescribeEventBus"):
            return {self._arns.event_bus(self._bus_name(body, "Name"))}
        rule = body.get("Rule", body.get("Name"))
        if operation not in ("ListRules", "ListEventBuses", "TestEventPattern") and isinstance(rule, str):
            return {self._arns.rule(self._bus_name(body), rule)}
        return {"*"}

    # -- buses ----------------------------------------------------------------------------------

    def _bus_name(self, body: dict[str, Any], key: str = "EventBusName") -> str:
        """A bus name or ARN, as EventBridge accepts both."""
        value = _str(body, key, default=DEFAULT_BUS) or DEFAULT_BUS
        if value.startswith("arn:aws:events:") and ":event-bus/" in value:
            value = value.split(":event-bus/", 1)[1]
        if not eventbus.BUS_NAME_RE.fullmatch(value):
            raise errors.Validation(f"Event bus name {value!r} must match [\\.\\-_A-Za-z0-9]+")
        return value

    async def _require_bus(self, name: str) -> None:
        if name != DEFAULT_BUS and (await self._store.get(eventbus.bus_key(name)))[0] is None:
            raise errors.ResourceNotFound(f"Event bus {name} does not exist.")

    def _bus_record(self, name: str) -> dict[str, Any]:
        return {"Name": name, "Arn": self._arns.event_bus(name)}

    async def create_event_bus(self, body: dict[str, Any]) -> dict[str, Any]:
        name = self._bus_name(body, "Name")
        if "EventSourceName" in body:
            raise errors.Validation("Partner event sources are not supported by kambda")
        created = name != DEFAULT_BUS and await self._store.create(
            eventbus.bus_key(name), {"Name": name, "CreatedAt": time.time(), "Description": _str(body, "Description")})
        if not created:
            raise errors.ResourceAlreadyExists(f"Event bus {name} already exists.")
        return {"EventBusArn": self._arns.event_bus(name)}

    async def delete_event_bus(self, body: dict[str, Any]) -> dict[str, Any]:
        name = self._bus_name(body, "Name")
        if name == DEFAULT_BUS:
            raise errors.Validation("Cannot delete event bus default.")
        if await self._store.keys(f"rule/{name}/"):
            raise errors.Validation(f"Event bus {name} still has rules; delete them first.")
        await self._store.delete(eventbus.bus_key(name))
        return {}

    async def describe_event_bus(self, body: dict[str, Any]) -> dict[str, Any]:
        name = self._bus_name(body, "Name")
        await self._require_bus(name)
        return self._bus_record(name)

    async def list_event_buses(self, body: dict[str, Any]) -> dict[str, Any]:
        prefix = _str(body, "NamePrefix")
        names = [DEFAULT_BUS] + [key.split("/", 1)[1] for key in await self._store.keys("bus/")]
        chosen = sorted(n for n in names if n.startswith(prefix))
        page, token = _page(chosen, body)
        return {"EventBuses": [self._bus_record(n) for n in page], **({"NextToken": token} if token else {})}

    # -- rules ----------------------------------------------------------------------------------

    async def _rule(self, body: dict[str, Any], key: str = "Name") -> tuple[str, str, Record]:
        event_bus = self._bus_name(body)
        name = _name(_str(body, key, required=True), key)
        rule, _ = await self._store.get(eventbus.rule_key(event_bus, name))
        if rule is None:
            raise errors.ResourceNotFound(f"Rule {name} does not exist on EventBus {event_bus}.")
        return event_bus, name, rule

    def _describe(self, rule: Record) -> dict[str, Any]:
        out = {"Name": rule["Name"], "Arn": self._arns.rule(rule["EventBusName"], rule["Name"]),
               "State": rule["State"], "EventBusName": rule["EventBusName"], "CreatedBy": self._arns.account}
        for key in ("EventPattern", "ScheduleExpression", "Description", "RoleArn"):
            if rule.get(key):
                out[key] = rule[key]
        return out

    async def put_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        event_bus = self._bus_name(body)
        name = _name(_str(body, "Name", required=True), "name")
        await self._require_bus(event_bus)
        pattern = _str(body, "EventPattern")
        schedule = _str(body, "ScheduleExpression")
        state = _str(body, "State", default="ENABLED")
        if not pattern and not schedule:
            raise errors.Validation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
        if state not in ("ENABLED", "DISABLED"):
            raise errors.Validation(f"State {state!r} is not ENABLED or DISABLED")
        if pattern:
            patterns.parse(pattern)
        now = time.time()
        if schedule:
            if event_bus != DEFAULT_BUS:
                raise errors.Validation("ScheduleExpression is supported only on the default event bus.")
            schedules.parse(schedule, datetime.fromtimestamp(now, UTC))

        def change(current: Record | None) -> Record:
            rule = dict(current or {"Targets": [], "CreatedAt": now})
            if (current or {}).get("ScheduleExpression") != schedule:
                rule["ScheduleAnchor"] = now  # a rate counts from when it was set
            rule.update({"Name": name, "EventBusName": event_bus, "EventPattern": pattern,
                         "ScheduleExpression": schedule, "State": state,
                         "Description": _str(body, "Description"), "RoleArn": _str(body, "RoleArn")})
            return rule

        await self._store.update(eventbus.rule_key(event_bus, name), change)
        return {"RuleArn": self._arns.rule(event_bus, name)}

    async def describe_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._describe((await self._rule(body))[2])

    async def list_rules(self, body: dict[str, Any]) -> dict[str, Any]:
        event_bus = self._bus_name(body)
        await self._require_bus(event_bus)
        prefix = _str(body, "NamePrefix")
        keys = await self._store.keys(f"rule/{event_bus}/{prefix}")
        page, token = _page(keys, body)
        rules = []
        for key in page:
            rule, _ = await self._store.get(key)
            if rule is not None:
                rules.append(self._describe(rule))
        return {"Rules": rules, **({"NextToken": token} if token else {})}

    async def _set_state(self, body: dict[str, Any], state: str) -> dict[str, Any]:
        event_bus, name, _ = await self._rule(body)

        def change(current: Record | None) -> Record:
            if current is None:
                raise errors.ResourceNotFound(f"Rule {name} does not exist on EventBus {event_bus}.")
            return {**current, "State": state}

        await self._store.update(eventbus.rule_key(event_bus, name), change)
        return {}

    async def enable_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._set_state(body, "ENABLED")

    async def disable_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._set_state(body, "DISABLED")

    async def delete_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        event_bus = self._bus_name(body)
        name = _name(_str(body, "Name", required=True), "name")

        def change(current: Record | None) -> None:
            if current is not None and current.get("Targets"):
                raise errors.Validation("Rule can't be deleted since it has targets.")
            return None

        await self._store.update(eventbus.rule_key(event_bus, name), change)
        await self._store.update(eventbus.fired_key(event_bus, name), lambda current: None)
        return {}

    # -- targets --------------------------------------------------------------------------------

    def _target_problem(self, target: Any) -> str | None:
        if not isinstance(target, dict):
            return "a target must be an object"
        if not isinstance(target.get("Id"), str) or not eventbus.NAME_RE.fullmatch(target["Id"]):
            return "Id must match [\\.\\-_A-Za-z0-9]+ (1 to 64 characters)"
        arn = target.get("Arn")
        if not isinstance(arn, str) or not arn.startswith("arn:aws:lambda:"):
            return f"Target {arn!r} is not a Lambda function ARN; kambda delivers to functions"
        try:
            parse_function(arn)
            event_input.validate(target)
        except errors.KambdaError as exc:
            return exc.message
        policy = target.get("RetryPolicy") or {}
        attempts, age = policy.get("MaximumRetryAttempts"), policy.get("MaximumEventAgeInSeconds")
        if attempts is not None and (not isinstance(attempts, int) or not 0 <= attempts <= MAX_RETRY_ATTEMPTS):
            return f"RetryPolicy.MaximumRetryAttempts must be 0..{MAX_RETRY_ATTEMPTS}"
        if age is not None and (not isinstance(age, int) or not 60 <= age <= 86400):
            return "RetryPolicy.MaximumEventAgeInSeconds must be 60..86400"
        dead_letter = (target.get("DeadLetterConfig") or {}).get("Arn")
        if dead_letter is not None:
            problem = destination_arn_error(dead_letter) if isinstance(dead_letter, str) else "must be a string"
            if problem:
                return f"DeadLetterConfig.Arn: {problem}"
        return None

    async def put_targets(self, body: dict[str, Any]) -> dict[str, Any]:
        event_bus, name, _ = await self._rule(body, "Rule")
        targets = body.get("Targets")
        if not isinstance(targets, list) or not 1 <= len(targets) <= 10:
            raise errors.Validation("Targets must be a list of 1 to 10 targets")
        failed: list[dict[str, str]] = []
        good = []
        for target in targets:
            problem = self._target_problem(target)
            if problem:
                target_id = target.get("Id", "") if isinstance(target, dict) else ""
                failed.append({"TargetId": str(target_id), "ErrorCode": "ValidationException",
                               "ErrorMessage": problem})
            else:
                good.append({k: v for k, v in target.items() if v is not None})

        def change(current: Record | None) -> Record:
            if current is None:
                raise errors.ResourceNotFound(f"Rule {name} does not exist on EventBus {event_bus}.")
            merged = {t["Id"]: t for t in current.get("Targets", [])}
            merged.update({t["Id"]: t for t in good})
            if len(merged) > eventbus.MAX_TARGETS_PER_RULE:
                raise errors.LimitExceeded(f"The requested resource exceeds the maximum number allowed: a rule "
                                           f"has at most {eventbus.MAX_TARGETS_PER_RULE} targets.")
            return {**current, "Targets": list(merged.values())}

        if good:
            await self._store.update(eventbus.rule_key(event_bus, name), change)
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    async def remove_targets(self, body: dict[str, Any]) -> dict[str, Any]:
        event_bus, name, _ = await self._rule(body, "Rule")
        ids = body.get("Ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise errors.Validation("Ids must be a non-empty list of target ids")

        def change(current: Record | None) -> Record:
            if current is None:
                raise errors.ResourceNotFound(f"Rule {name} does not exist on EventBus {event_bus}.")
            return {**current, "Targets": [t for t in current.get("Targets", []) if t["Id"] not in ids]}

        await self._store.update(eventbus.rule_key(event_bus, name), change)
        return {"FailedEntryCount": 0, "FailedEntries": []}

    async def list_targets_by_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        _, _, rule = await self._rule(body, "Rule")
        page, token = _page(rule.get("Targets", []), body)
        return {"Targets": page, **({"NextToken": token} if token else {})}

    # -- events ---------------------------------------------------------------------------------

    async def test_event_pattern(self, body: dict[str, Any]) -> dict[str, Any]:
        node = patterns.parse(_str(body, "EventPattern", required=True))
        try:
            event = orjson.loads(_str(body, "Event", required=True))
        except ValueError:
            raise errors.Validation("Parameter Event is not valid: it is not JSON.") from None
        missing = [k for k in ("id", "account", "source", "time", "region", "detail-type")
                   if not isinstance(event, dict) or k not in event]
        if missing:
            raise errors.Validation(f"Parameter Event is not valid: it lacks {', '.join(missing)}.")
        return {"Result": patterns.matches(node, event)}

    async def put_events(self, body: dict[str, Any]) -> dict[str, Any]:
        entries = body.get("Entries")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
            raise errors.Validation(f"1 validation error detected: Value at 'entries' failed to satisfy constraint: "
                                    f"Member must have length between 1 and {MAX_ENTRIES}")
        if sum(_entry_size(e) for e in entries) > MAX_PUT_EVENTS_BYTES:
            raise errors.Validation("Total size of the entries in the request is over the limit.")
        results = await asyncio.gather(*(self._put_one(e) for e in entries))
        return {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": list(results)}

    async def _put_one(self, entry: Any) -> dict[str, str]:
        if not isinstance(entry, dict):
            return {"ErrorCode": "InvalidArgument", "ErrorMessage": "An entry must be an object."}
        for key in ("Source", "DetailType", "Detail"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                return {"ErrorCode": "InvalidArgument",
                        "ErrorMessage": f"Parameter {key} is not valid. Reason: {key} is a required argument."}
        try:
            detail = orjson.loads(entry["Detail"])  # refuses lone surrogates and nesting past 1024
        except ValueError:
            detail = None
        if not isinstance(detail, dict):
            return {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
        resources = entry.get("Resources") or []
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            return {"ErrorCode": "InvalidArgument", "ErrorMessage": "Parameter Resources is not valid."}
        try:
            event_bus = self._bus_name(entry)
            await self._require_bus(event_bus)
        except errors.KambdaError as exc:
            return {"ErrorCode": "InvalidArgument", "ErrorMessage": exc.message}
        when = _entry_time(entry.get("Time"))
        event = eventbus.envelope({"source": entry["Source"], "detail-type": entry["DetailType"],
                                   "resources": resources, "detail": detail, "time": when},
                                  self._arns.account, self._arns.region, datetime.now(UTC))
        try:
            data = orjson.dumps(event)
        except orjson.JSONEncodeError:
            return {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is nested too deeply."}
        try:
            await self._dispatcher.store(bus.events_subject(event_bus), data)
        except errors.KambdaError as exc:
            return {"ErrorCode": "InternalFailure", "ErrorMessage": exc.message}
        return {"EventId": event["id"]}


def _entry_time(value: Any) -> str | None:
    """The protocol layer parses Time (epoch seconds from boto3, or ISO 8601) into a datetime."""
    if isinstance(value, datetime):
        return eventbus.iso(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return eventbus.iso(datetime.fromtimestamp(value, UTC))
    return value if isinstance(value, str) and value else None


def _entry_size(entry: Any) -> int:
    """AWS's PutEvents entry size: its strings in UTF-8, plus 14 bytes for a Time."""
    if not isinstance(entry, dict):
        return 0
    size = 14 if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        if isinstance(entry.get(key), str):
            size += len(entry[key].encode())
    for resource in entry.get("Resources") or []:
        if isinstance(resource, str):
            size += len(resource.encode())
    return size


def _page(items: list[Any], body: dict[str, Any]) -> tuple[list[Any], str]:
    """One page of ``items`` from NextToken (an offset), at most Limit (default 100) long."""
    limit = body.get("Limit", 100)
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise errors.Validation("Limit must be an integer from 1 to 100")
    token = body.get("NextToken") or "0"
    if not isinstance(token, str) or not token.isdigit():
        raise errors.Validation("NextToken is not valid")
    start = int(token)
    end = start + limit
    return items[start:end], str(end) if end < len(items) else ""
