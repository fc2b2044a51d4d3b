"""Starting a STANDARD execution and closing one: what StartExecution (and a parent's ``states:startExecution``
task) and the executor share.

Start is idempotent in three writes, each safe to repeat: the execution's record (KV create; the same name with
the same input finds the one made before), its first history event ``ExecutionStarted`` (compare-and-set on an
empty subject) and the ``start`` message on the work stream (deduplicated by its id). A caller that dies between
them is repeated by the client's retry, which completes what is missing. Closing brings the record up to date with
the history's last event, tells EventBridge ("Step Functions Execution Status Change" on the default bus) and wakes
a waiting parent (``.sync``).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from nats.aio.client import Client as NATS

from kambda import bus
from workflows import errors, history
from workflows.history import Event
from workflows.records import Records, execution_id, execution_key

log = logging.getLogger(__name__)

STATUS_OF = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED", "ExecutionAborted": "ABORTED",
             "ExecutionTimedOut": "TIMED_OUT"}
DETAIL_TYPE = "Step Functions Execution Status Change"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def machine_name(machine_arn: str) -> str:
    return machine_arn.split(":")[6]


def execution_arn(machine_arn: str, name: str) -> str:
    """``arn:aws:states:<region>:<account>:execution:<machine>:<name>`` (of a version or alias ARN too)."""
    parts = machine_arn.split(":")
    return ":".join(parts[:5] + ["execution", parts[6], name])


async def start(nc: NATS, records: Records, machine: dict[str, Any], name: str, input_text: str,
                parent: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start (or find, the same name and input) an execution of ``machine`` (a state machine, version or alias
    resolved to: ``arn`` of the state machine, ``definition``, ``roleArn``, and optional ``versionArn`` and
    ``aliasArn``)."""
    arn = execution_arn(machine["arn"], name)
    ident = execution_id(arn)
    key = execution_key(machine_name(machine["arn"]), arn)
    now = time.time()
    record: dict[str, Any] = {
        "executionArn": arn, "stateMachineArn": machine["arn"], "name": name, "status": "RUNNING",
        "startDate": now, "startIso": iso(now), "input": input_text, "definition": machine["definition"],
        "roleArn": machine.get("roleArn", ""), "id": ident, "key": key, "redriveCount": 0,
    }
    for field in ("versionArn", "aliasArn"):
        if machine.get(field):
            record[field] = machine[field]
    if parent:
        record["parent"] = parent
    if not await records.executions.create(key, record):
        existing, _ = await records.executions.get(key)
        if existing is None:
            raise errors.ExecutionAlreadyExists(f"Execution Already Exists: '{arn}'")
        if existing["input"] != input_text or existing["status"] != "RUNNING":
            raise errors.ExecutionAlreadyExists(f"Execution Already Exists: '{arn}'")
        record = existing
    details: dict[str, Any] = {"input": record["input"], "inputDetails": {"truncated": False},
                               "roleArn": record["roleArn"]}
    if record.get("aliasArn"):
        details["stateMachineAliasArn"] = record["aliasArn"]
    if record.get("versionArn"):
        details["stateMachineVersionArn"] = record["versionArn"]
    await history.append_first(nc, ident, Event(1, 0, record["startDate"], "ExecutionStarted", details, "start"))
    await nc.jetstream().publish(bus.sfn_work_subject(ident), orjson.dumps({"k": "start", "e": ident, "r": key}),
                                 headers={"Nats-Msg-Id": f"{ident}:start:{record.get('redriveCount', 0)}"},
                                 timeout=10)
    return record


def describe(record: dict[str, Any]) -> dict[str, Any]:
    """DescribeExecution's answer."""
    out: dict[str, Any] = {
        "executionArn": record["executionArn"], "stateMachineArn": record["stateMachineArn"],
        "name": record["name"], "status": record["status"], "startDate": record["startDate"],
        "input": record["input"], "inputDetails": {"included": True},
        "redriveCount": record.get("redriveCount", 0),
    }
    if record.get("stopDate"):
        out["stopDate"] = record["stopDate"]
    if record.get("output") is not None:
        out["output"] = record["output"]
        out["outputDetails"] = {"included": True}
    for field in ("error", "cause"):
        if record.get(field):
            out[field] = record[field]
    if record.get("versionArn"):
        out["stateMachineVersionArn"] = record["versionArn"]
    if record.get("aliasArn"):
        out["stateMachineAliasArn"] = record["aliasArn"]
    if record.get("redriveDate"):
        out["redriveDate"] = record["redriveDate"]
    out["redriveStatus"] = "REDRIVABLE" if record["status"] in ("FAILED", "TIMED_OUT", "ABORTED") \
        else "NOT_REDRIVABLE"
    if out["redriveStatus"] == "NOT_REDRIVABLE":
        out["redriveStatusReason"] = "Execution is RUNNING and cannot be redriven" \
            if record["status"] == "RUNNING" else "Execution is SUCCEEDED and cannot be redriven"
    return out


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """One item of ListExecutions."""
    out = {key: record[key] for key in ("executionArn", "stateMachineArn", "name", "status", "startDate")}
    if record.get("stopDate"):
        out["stopDate"] = record["stopDate"]
    if record.get("versionArn"):
        out["stateMachineVersionArn"] = record["versionArn"]
    if record.get("aliasArn"):
        out["stateMachineAliasArn"] = record["aliasArn"]
    out["redriveCount"] = record.get("redriveCount", 0)
    return out


def closed_record(record: dict[str, Any], last: Event) -> dict[str, Any]:
    """The record of an execution whose history ends with ``last`` (a closing event)."""
    details = last.details or {}
    out = {**record, "status": STATUS_OF[last.type], "stopDate": last.ts}
    out.pop("output", None)
    out.pop("error", None)
    out.pop("cause", None)
    if last.type == "ExecutionSucceeded":
        out["output"] = details.get("output", "null")
    else:
        if details.get("error"):
            out["error"] = details["error"]
        if details.get("cause"):
            out["cause"] = details["cause"]
    return out


def status_event(record: dict[str, Any], account: str, region: str) -> dict[str, Any]:
    """The EventBridge event of an execution's status (AWS's "Step Functions Execution Status Change")."""
    detail = {
        "executionArn": record["executionArn"], "stateMachineArn": record["stateMachineArn"],
        "name": record["name"], "status": record["status"], "startDate": int(record["startDate"] * 1000),
        "stopDate": int(record["stopDate"] * 1000) if record.get("stopDate") else None,
        "input": record["input"], "output": record.get("output"), "inputDetails": {"included": True},
        "outputDetails": {"included": True} if record.get("output") is not None else None,
        "error": record.get("error"), "cause": record.get("cause"),
    }
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": DETAIL_TYPE, "source": "aws.states",
            "account": account, "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
            "resources": [record["executionArn"]], "detail": detail}


async def close(nc: NATS, records: Records, record: dict[str, Any], last: Event) -> tuple[dict[str, Any], bool]:
    """Bring the record up to date with its closing event: (the record, whether this call closed it)."""
    closed = closed_record(record, last)
    changed = False

    def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal changed
        if current is None or current.get("status") != "RUNNING":
            changed = False
            return current
        changed = True
        return {**current, **{k: v for k, v in closed.items() if k != "definition"},
                **({} if "output" in closed else {"output": None})}

    result = await records.executions.update(record["key"], change)
    return result or closed, changed
