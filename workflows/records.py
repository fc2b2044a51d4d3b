"""Step Functions' records as they are stored: state machines, versions, aliases, activities, executions, tokens.

Three KV buckets (kambda/bus/__init__.py names them), values JSON:

- ``kambda_sfn``: ``sm.<key>`` a state machine (with its tags and the number of its next version),
  ``ver.<key>.<n>`` a published version (a snapshot of the definition), ``alias.<key>.<alias>`` an alias with
  its routing weights, ``act.<key>`` an activity;
- ``kambda_sfn_executions``: ``<machine-key>.<execution-id>`` one execution's record: what DescribeExecution
  answers and what the executor needs to run it (the definition it started with). The history on
  ``KAMBDA_SFN_HISTORY`` is the truth; this record is its index, brought up to date by the executor when
  the execution closes;
- ``kambda_sfn_tokens``: ``<execution-id>.<event-id>`` a task token that waits for SendTaskSuccess/Failure,
  with the last heartbeat.

A name becomes a key as it is when it is made of KV-safe characters, else as ``x`` and its hex; an execution's
id is a digest of its ARN (it names its history subject too).
"""

from __future__ import annotations

import hashlib
import re

from nats.js import JetStreamContext

from kambda import bus
from kambda.bus.jsonkv import Bucket

_SAFE = re.compile(r"[A-Za-z0-9_-]{1,80}")
#: AWS: 1-80 characters, none of whitespace, brackets, wildcards, special characters or control characters.
NAME_RE = re.compile(r"[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]{1,80}")


def name_key(name: str) -> str:
    return name if _SAFE.fullmatch(name) else "x" + name.encode().hex()


def execution_id(execution_arn: str) -> str:
    """The id of an execution (its history subject, its key): a digest of its ARN."""
    return hashlib.sha256(execution_arn.encode()).hexdigest()[:32]


def machine_key(name: str) -> str:
    return f"sm.{name_key(name)}"


def version_key(name: str, version: int) -> str:
    return f"ver.{name_key(name)}.{version}"


def alias_key(name: str, alias: str) -> str:
    return f"alias.{name_key(name)}.{name_key(alias)}"


def activity_key(name: str) -> str:
    return f"act.{name_key(name)}"


def execution_key(machine: str, execution_arn: str) -> str:
    return f"{name_key(machine)}.{execution_id(execution_arn)}"


def token_key(execution: str, task: str) -> str:
    """A task token's key: its execution's id and a digest of the task's step key."""
    return f"{execution}.{hashlib.sha1(task.encode()).hexdigest()[:20]}"


class Records:
    """The three buckets of Step Functions."""

    def __init__(self, js: JetStreamContext) -> None:
        self.machines = Bucket(js, bus.SFN_BUCKET)
        self.executions = Bucket(js, bus.SFN_EXECUTIONS_BUCKET)
        self.tokens = Bucket(js, bus.SFN_TOKENS_BUCKET)
