"""State machine ARNs, and what an ARN runs: the state machine itself, a published version, or an alias's pick.

``arn:aws:states:<region>:<account>:stateMachine:<name>`` is the machine (its current definition);
``...:<name>:<n>`` a version, ``...:<name>:<alias>`` an alias, which routes each execution to one of its one or
two versions by their weights.
"""

from __future__ import annotations

import random
import re
from typing import Any

from workflows import errors
from workflows.records import Records, alias_key, machine_key, version_key

ARN_RE = re.compile(r"arn:aws[a-z-]*:states:([a-z0-9-]+):(\d{12}):stateMachine:([^:]+)(?::([^:]+))?")
ACTIVITY_RE = re.compile(r"arn:aws[a-z-]*:states:([a-z0-9-]+):(\d{12}):activity:([^:]+)")
EXECUTION_RE = re.compile(r"arn:aws[a-z-]*:states:([a-z0-9-]+):(\d{12}):(?:execution|express):([^:]+):([^:]+)")


def parse_arn(arn: Any, what: str = "stateMachineArn") -> tuple[str, str | None]:
    """(machine name, qualifier: a version number, an alias name or None); InvalidArn otherwise."""
    match = ARN_RE.fullmatch(arn) if isinstance(arn, str) else None
    if match is None:
        raise errors.InvalidArn(f"Invalid Arn: 'Resource type not valid in this context: {arn}'"
                                if isinstance(arn, str) and arn.startswith("arn:") else f"Invalid Arn: '{arn}'")
    return match.group(3), match.group(4)


def parse_execution_arn(arn: Any) -> tuple[str, str]:
    match = EXECUTION_RE.fullmatch(arn) if isinstance(arn, str) else None
    if match is None:
        raise errors.InvalidArn(f"Invalid Arn: '{arn}'")
    return match.group(3), match.group(4)


def pick(routing: list[dict[str, Any]], draw: float) -> str:
    """The version ARN an alias runs for a uniform draw in [0, 1)."""
    total = 0.0
    for route in routing:
        total += route["weight"] / 100.0
        if draw < total:
            return str(route["stateMachineVersionArn"])
    return str(routing[-1]["stateMachineVersionArn"])


async def resolve_machine(records: Records, arn: str, rng: random.Random | None = None) -> dict[str, Any] | None:
    """What an execution of ``arn`` runs (``arn`` of the machine, ``definition``, ``roleArn``, ``type``, and
    ``versionArn``/``aliasArn`` when one was named), or None when it does not exist."""
    name, qualifier = parse_arn(arn)
    machine, _ = await records.machines.get(machine_key(name))
    if machine is None:
        return None
    base = machine["stateMachineArn"]
    found: dict[str, Any] = {"arn": base, "definition": machine["definition"], "roleArn": machine["roleArn"],
                             "type": machine["type"], "record": machine}
    if qualifier is None:
        return found
    alias_arn = None
    if not qualifier.isdigit():
        alias, _ = await records.machines.get(alias_key(name, qualifier))
        if alias is None:
            return None
        alias_arn = alias["stateMachineAliasArn"]
        qualifier = pick(alias["routingConfiguration"], (rng or random).random()).rsplit(":", 1)[1]
    version, _ = await records.machines.get(version_key(name, int(qualifier)))
    if version is None:
        return None
    found.update(definition=version["definition"], roleArn=version["roleArn"],
                 versionArn=version["stateMachineVersionArn"])
    if alias_arn:
        found["aliasArn"] = alias_arn
    return found
