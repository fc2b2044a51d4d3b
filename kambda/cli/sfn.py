"""``kambda sfn``: list state machines, start an execution, describe it, and read its history as a table.

The commands speak Step Functions' own API (JSON 1.0, ``X-Amz-Target: AWSStepFunctions.<Op>``) through the
CLI's client, so they work against any kambda endpoint the other commands reach. A state machine or execution
is named by its ARN or, for brevity, by its name (``orders``; an execution as ``orders/run-1``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kambda.cli.main import Client

TARGET = "AWSStepFunctions."
#: How often ``start --wait`` asks whether a STANDARD execution has ended.
POLL_S = 0.2


def call(client: Client, op: str, body: dict[str, Any]) -> Any:
    raw = json.dumps(body).encode()
    _, _, answer = client.request("POST", "/", raw, {"X-Amz-Target": TARGET + op,
                                                    "Content-Type": "application/x-amz-json-1.0"}, service="states")
    return json.loads(answer) if answer else {}


def _account(client: Client) -> str:
    """The caller's account, from STS's GetCallerIdentity (the account kambda's ARNs carry)."""
    _, _, answer = client.request("POST", "/", b"Action=GetCallerIdentity&Version=2011-06-15",
                                  {"Content-Type": "application/x-www-form-urlencoded"}, service="sts")
    found = re.search(rb"<Account>(\d+)</Account>", answer)
    return found.group(1).decode() if found else "000000000000"


def machine_arn(client: Client, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:aws:states:{client.region}:{_account(client)}:stateMachine:{name}"


def execution_arn(client: Client, name: str) -> str:
    if name.startswith("arn:"):
        return name
    machine, sep, run = name.partition("/")
    if not sep:
        from kambda.cli.main import CliError

        raise CliError(f"name an execution by its ARN or as MACHINE/EXECUTION, not {name!r}")
    return machine_arn(client, machine).replace(":stateMachine:", ":execution:") + f":{run}"


def _when(value: Any) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return str(value)


def _seconds(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _input(text: str | None) -> str:
    if text and text.startswith("@"):
        from kambda.cli.main import CliError

        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise CliError(f"cannot read {text[1:]}: {exc.strerror}") from None
    return text or "{}"


def cmd_ls(args: argparse.Namespace, client: Client) -> int:
    from kambda.cli.main import print_table

    machines: list[dict[str, Any]] = []
    token = None
    while True:
        page = call(client, "ListStateMachines", {"maxResults": 100, **({"nextToken": token} if token else {})})
        machines.extend(page.get("stateMachines") or [])
        token = page.get("nextToken")
        if not token:
            break
    print_table(args, ("Name", "Type", "Created", "ARN"),
                [(m["name"], m["type"], _when(m["creationDate"]), m["stateMachineArn"]) for m in machines], machines)
    return 0


def cmd_start(args: argparse.Namespace, client: Client) -> int:
    from kambda.cli.main import out

    body: dict[str, Any] = {"stateMachineArn": machine_arn(client, args.machine), "input": _input(args.input)}
    if args.name:
        body["name"] = args.name
    started = call(client, "StartExecution", body)
    arn = started["executionArn"]
    if not args.wait:
        out.print(arn)
        return 0
    while (described := call(client, "DescribeExecution", {"executionArn": arn}))["status"] == "RUNNING":
        time.sleep(POLL_S)
    return _print_outcome(described)


def _print_outcome(described: dict[str, Any]) -> int:
    from kambda.cli.main import out

    out.print(f"{described['executionArn']}: {described['status']}")
    if described.get("output") is not None:
        sys.stdout.write(described["output"] + "\n")
    if described.get("error") or described.get("cause"):
        sys.stdout.write(f"{described.get('error', '')}: {described.get('cause', '')}\n")
    return 0 if described["status"] == "SUCCEEDED" else 1


def cmd_describe(args: argparse.Namespace, client: Client) -> int:
    described = call(client, "DescribeExecution", {"executionArn": execution_arn(client, args.execution)})
    if args.output == "json":
        sys.stdout.write(json.dumps(described, indent=2) + "\n")
        return 0
    from kambda.cli.main import out

    out.print(f"{described['name']}  {described['status']}  started {_when(described['startDate'])}"
              + (f"  stopped {_when(described['stopDate'])}" if described.get("stopDate") else ""))
    out.print(f"input: {described.get('input', '')}")
    if described.get("output") is not None:
        out.print(f"output: {described['output']}")
    if described.get("error") or described.get("cause"):
        out.print(f"error: {described.get('error', '')}: {described.get('cause', '')}")
    return 0


def _state_of(event: dict[str, Any]) -> str:
    for key, details in event.items():
        if key.endswith("EventDetails") and isinstance(details, dict) and details.get("name"):
            return str(details["name"])
    return ""


def history_rows(events: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(id, type, state, time since the start, time since the previous event) per event: what took how long."""
    rows = []
    first = previous = None
    for event in events:
        ts = _seconds(event["timestamp"])
        first = ts if first is None else first
        since = "" if previous is None else f"+{(ts - previous) * 1000:,.0f} ms"
        rows.append((str(event["id"]), event["type"], _state_of(event), f"{(ts - first) * 1000:,.0f} ms", since))
        previous = ts
    return rows


def cmd_history(args: argparse.Namespace, client: Client) -> int:
    from kambda.cli.main import print_table

    arn = execution_arn(client, args.execution)
    events: list[dict[str, Any]] = []
    token = None
    while True:
        page = call(client, "GetExecutionHistory", {"executionArn": arn, "maxResults": 1000,
                                                    **({"nextToken": token} if token else {})})
        events.extend(page.get("events") or [])
        token = page.get("nextToken")
        if not token:
            break
    print_table(args, ("Id", "Type", "State", "Elapsed", "Step"), history_rows(events), events)
    return 0


def add_parser(sub: Any, listing: argparse.ArgumentParser) -> None:
    sfn = sub.add_parser("sfn", help="Step Functions: state machines, executions and their histories")
    sfn_sub = sfn.add_subparsers(dest="sfn_command", required=True)
    sfn_sub.add_parser("ls", help="list state machines", parents=[listing])
    start = sfn_sub.add_parser("start", help="start an execution of a state machine (name or ARN)")
    start.add_argument("machine")
    start.add_argument("--input", help="JSON, or @file (default {})")
    start.add_argument("--name", help="the execution's name (default: a UUID)")
    start.add_argument("--wait", action="store_true", help="wait for it to end and print its output")
    describe = sfn_sub.add_parser("describe", help="an execution's status, input and output (ARN or MACHINE/NAME)",
                                  parents=[listing])
    describe.add_argument("execution")
    history = sfn_sub.add_parser("history", help="an execution's events as a table with their durations",
                                 parents=[listing])
    history.add_argument("execution")


def cmd_sfn(args: argparse.Namespace, client: Client) -> int:
    return {"ls": cmd_ls, "start": cmd_start, "describe": cmd_describe, "history": cmd_history}[
        args.sfn_command](args, client)
