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
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from kambda import bus
from kambda.aws import errors

Record = dict[str, Any]
CAS_ATTEMPTS = 8
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


class Bucket:
    """One KV bucket of JSON values, with compare-and-set updates."""

    def __init__(self, js: JetStreamContext, name: str) -> None:
        self._js = js
        self._name = name
        self._kv: KeyValue | None = None

    async def kv(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._js.key_value(self._name)
        return self._kv

    async def get(self, key: str) -> tuple[Record | None, int]:
        try:
            entry = await (await self.kv()).get(key)
        except KeyNotFoundError:
            return None, 0
        if not entry.value:
            return None, 0
        return orjson.loads(entry.value), entry.revision or 0

    async def create(self, key: str, value: Record) -> bool:
        try:
            await (await self.kv()).create(key, orjson.dumps(value))
        except KeyWrongLastSequenceError:
            return False
        return True

    async def put(self, key: str, value: Record) -> None:
        await (await self.kv()).put(key, orjson.dumps(value))

    async def update(self, key: str, change: Callable[[Record | None], Awaitable[Record | None] | Record | None],
                     ) -> Record | None:
        """Read, change and write back with compare-and-set; ``change`` returns the new value or None to delete."""
        kv = await self.kv()
        for _ in range(CAS_ATTEMPTS):
            current, revision = await self.get(key)
            result = change(current)
            new = await result if isinstance(result, Awaitable) else result
            try:
                if new is None:
                    if revision:
                        await kv.delete(key, last=revision)
                elif revision:
                    await kv.update(key, orjson.dumps(new), last=revision)
                else:
                    await kv.create(key, orjson.dumps(new))
                return new
            except KeyWrongLastSequenceError:
                continue
        raise errors.ConcurrentModification(f"{key} was changed by another request meanwhile; try again")

    async def delete(self, key: str) -> None:
        await (await self.kv()).delete(key)

    async def keys(self, prefix: str = "") -> list[str]:
        """The keys under ``prefix`` (ending with a dot), filtered by the server (nats-py's ``keys(filters=...)``
        filters in the client, after reading every key)."""
        watcher = await (await self.kv()).watch(prefix + ">" if prefix else ">", ignore_deletes=True,
                                                meta_only=True)
        keys = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if entry.operation is None:
                    keys.append(entry.key)
        finally:
            await watcher.stop()
        return sorted(keys)

    async def values(self, prefix: str) -> list[Record]:
        out = []
        for key in await self.keys(prefix):
            value, _ = await self.get(key)
            if value is not None:
                out.append(value)
        return out


class Records:
    """The three buckets of Step Functions."""

    def __init__(self, js: JetStreamContext) -> None:
        self.machines = Bucket(js, bus.SFN_BUCKET)
        self.executions = Bucket(js, bus.SFN_EXECUTIONS_BUCKET)
        self.tokens = Bucket(js, bus.SFN_TOKENS_BUCKET)
