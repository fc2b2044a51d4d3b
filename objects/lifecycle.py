"""Lifecycle expiration: the bucket's rules and the pass that applies them as of a clock.

Rules (PutBucketLifecycleConfiguration) are kept as given, dates as epoch seconds. An enabled rule applies to the
keys its filter selects (``Prefix``; ``Tag``; ``ObjectSizeGreaterThan`` / ``LessThan``; ``And`` of those; the legacy
rule-level ``Prefix``) and may:

* ``Expiration`` ``Days`` / ``Date``: expire the current version: on an unversioned bucket it is deleted, on a
  versioned one a delete marker is put on it (``LifecycleExpiration:Delete`` / ``:DeleteMarkerCreated``). Days are
  counted as S3 counts them: the object's time plus the days, rounded up to the next midnight UTC.
* ``Expiration`` ``ExpiredObjectDeleteMarker``: remove a delete marker that no other version is left behind.
* ``NoncurrentVersionExpiration`` ``NoncurrentDays`` (from when the next version replaced it), keeping the
  ``NewerNoncurrentVersions`` newest noncurrent ones.
* ``AbortIncompleteMultipartUpload`` ``DaysAfterInitiation``.

Transitions are accepted and kept (there is one storage class here), never applied. :class:`Lifecycle` runs the
pass every ``interval_s`` (once an hour: S3's own pass is daily); :meth:`Lifecycle.run` takes ``now`` so a test
runs it "a year later" instead of waiting. Every gateway runs it; two passes at once at worst make one delete
marker twice on a versioned bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from objects import errors
from objects.store import ObjectMeta, Store

log = logging.getLogger(__name__)

DAY = 86400
INTERVAL_S = 3600.0
MAX_RULES = 1000
PAGE = 1000


def _malformed() -> errors.S3Error:
    return errors.MalformedXML("The XML you provided was not well-formed or did not validate against our published "
                               "schema")


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def validate(config: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """PutBucketLifecycleConfiguration's ``LifecycleConfiguration`` to the rules kept; S3's errors otherwise."""
    rules = list((config or {}).get("Rules") or ())
    if not rules or len(rules) > MAX_RULES:
        raise _malformed()
    kept: list[dict[str, Any]] = []
    ids: set[str] = set()
    for raw in rules:
        rule = dict(raw)
        if rule.get("Status") not in ("Enabled", "Disabled"):
            raise _malformed()
        rule_id = rule.get("ID") or ""
        if len(rule_id) > 255:
            raise errors.InvalidArgument("ID length should not exceed allowed limit of 255", ArgumentName="ID",
                                         ArgumentValue=rule_id)
        if rule_id:
            if rule_id in ids:
                raise errors.InvalidArgument("RuleId must be unique. Found same ID for more than one rule",
                                             ArgumentName="ID", ArgumentValue=rule_id)
            ids.add(rule_id)
        if "Prefix" in rule and "Filter" in rule:
            raise _malformed()
        actions = ("Expiration", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload", "Transitions",
                   "NoncurrentVersionTransitions")
        if not any(rule.get(a) for a in actions):
            raise errors.InvalidRequest("At least one action needs to be specified in a rule")
        expiration = rule.get("Expiration")
        if expiration:
            expiration = dict(expiration)
            given = [k for k in ("Days", "Date", "ExpiredObjectDeleteMarker") if expiration.get(k) is not None]
            if len(given) != 1:
                if "ExpiredObjectDeleteMarker" in given:
                    raise errors.InvalidRequest("ExpiredObjectDeleteMarker cannot be specified with Days or Date "
                                                "in a Lifecycle Expiration Policy.")
                raise _malformed()
            if expiration.get("Days") is not None and expiration["Days"] <= 0:
                raise errors.InvalidArgument("'Days' for Expiration action must be a positive integer",
                                             ArgumentName="Days", ArgumentValue=str(expiration["Days"]))
            if expiration.get("Date") is not None:
                expiration["Date"] = _epoch(expiration["Date"])
                if expiration["Date"] % DAY:
                    raise errors.InvalidArgument("'Date' must be at midnight GMT", ArgumentName="Date",
                                                 ArgumentValue=str(expiration["Date"]))
            rule["Expiration"] = expiration
        noncurrent = rule.get("NoncurrentVersionExpiration")
        if noncurrent is not None and (noncurrent.get("NoncurrentDays") or 0) <= 0:
            raise errors.InvalidArgument("'NoncurrentDays' for NoncurrentVersionExpiration action must be a "
                                         "positive integer", ArgumentName="NoncurrentDays",
                                         ArgumentValue=str(noncurrent.get("NoncurrentDays")))
        abort = rule.get("AbortIncompleteMultipartUpload")
        if abort is not None:
            if (abort.get("DaysAfterInitiation") or 0) <= 0:
                raise errors.InvalidArgument("'DaysAfterInitiation' for AbortIncompleteMultipartUpload action "
                                             "must be a positive integer", ArgumentName="DaysAfterInitiation",
                                             ArgumentValue=str(abort.get("DaysAfterInitiation")))
            if _tags(rule):
                raise errors.InvalidRequest("Tag-based filter cannot be used with AbortIncompleteMultipartUpload "
                                            "action")
        kept.append(rule)
    return kept


def _filter(rule: Mapping[str, Any]) -> Mapping[str, Any]:
    filt = rule.get("Filter") or {}
    return filt.get("And") or filt


def _prefix(rule: Mapping[str, Any]) -> str:
    if "Prefix" in rule:
        return str(rule.get("Prefix") or "")
    return str(_filter(rule).get("Prefix") or "")


def _tags(rule: Mapping[str, Any]) -> dict[str, str]:
    filt = _filter(rule)
    found = {t["Key"]: t["Value"] for t in filt.get("Tags") or ()}
    if filt.get("Tag"):
        found[filt["Tag"]["Key"]] = filt["Tag"]["Value"]
    return found


def selects(rule: Mapping[str, Any], meta: ObjectMeta) -> bool:
    """Whether an enabled ``rule``'s filter takes this version (a delete marker has no tags nor size)."""
    if rule.get("Status") != "Enabled" or not meta.key.startswith(_prefix(rule)):
        return False
    filt = _filter(rule)
    if any(meta.tags.get(k) != v for k, v in _tags(rule).items()):
        return False
    above, below = filt.get("ObjectSizeGreaterThan"), filt.get("ObjectSizeLessThan")
    if above is not None and not meta.size > above:
        return False
    return below is None or meta.size < below


def scan_prefixes(rules: list[Mapping[str, Any]]) -> list[str]:
    """The key prefixes the enabled rules select, none inside another (``[""]``: the whole bucket)."""
    found: list[str] = []
    for prefix in sorted({_prefix(r) for r in rules if r.get("Status") == "Enabled"}):
        if not found or not prefix.startswith(found[-1]):
            found.append(prefix)
    return found


def due(since: float, days: int) -> float:
    """When something ``days`` days after ``since`` expires: rounded up to the next midnight UTC, as S3 does."""
    return (math.floor((since + days * DAY) / DAY) + 1) * DAY


def _expires_current(rules: list[Mapping[str, Any]], meta: ObjectMeta, now: float) -> bool:
    for rule in rules:
        expiration = rule.get("Expiration") or {}
        if not selects(rule, meta):
            continue
        if expiration.get("Days") is not None and now >= due(meta.last_modified, int(expiration["Days"])):
            return True
        if expiration.get("Date") is not None and now >= float(expiration["Date"]):
            return True
    return False


def plan(rules: list[Mapping[str, Any]], versions: list[ObjectMeta], now: float,
         versioned: bool) -> tuple[bool, list[ObjectMeta]]:
    """For one key's versions (newest first): whether its current version expires, and which versions go
    for good (noncurrent ones past their days, an expired delete marker left alone)."""
    if not versions:
        return False, []
    current = versions[0] if versions[0].is_latest else None
    expire_current = (current is not None and not current.delete_marker
                      and _expires_current(rules, current, now))
    gone: list[ObjectMeta] = []
    noncurrent = versions[1:] if current is not None else versions
    replaced_at = [v.last_modified for v in versions]
    start = 1 if current is not None else 0
    for rule in rules:
        limit = rule.get("NoncurrentVersionExpiration")
        if not limit:
            continue
        keep = int(limit.get("NewerNoncurrentVersions") or 0)
        days = int(limit["NoncurrentDays"])
        for index, meta in enumerate(noncurrent):
            if index < keep or meta in gone or not selects(rule, meta):
                continue
            position = start + index
            since = replaced_at[position - 1] if position > 0 else meta.last_modified
            if now >= due(since, days):
                gone.append(meta)
    if versioned and current is not None and current.delete_marker \
            and all(v in gone for v in noncurrent):
        for rule in rules:
            if (rule.get("Expiration") or {}).get("ExpiredObjectDeleteMarker") and selects(rule, current):
                gone.append(current)
                break
    return expire_current, gone


class Lifecycle:
    """Runs the expiration pass over every bucket with rules, every ``interval_s``."""

    def __init__(self, store: Store, clock: Any = time.time, interval_s: float = INTERVAL_S) -> None:
        self.store, self.clock, self.interval_s = store, clock, interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="s3-lifecycle")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run()
            except Exception:
                log.exception("s3: the lifecycle pass failed; trying again in %ss", self.interval_s)

    async def run(self, now: float | None = None) -> int:
        """One pass as of ``now`` (the clock's by default); how many versions, markers and uploads went."""
        moment = self.clock() if now is None else now
        count = 0
        for bucket, rules in (await self.store.configs("lifecycle")).items():
            try:
                count += await self._bucket(bucket, rules, moment)
            except errors.S3Error as err:
                if err.code != "NoSuchBucket":
                    raise
        return count

    async def _bucket(self, bucket: str, rules: list[Mapping[str, Any]], now: float) -> int:
        versioned = (await self.store.bucket(bucket)).versioning != ""
        count = 0
        for prefix in scan_prefixes(rules):
            count += await self._prefix(bucket, prefix, rules, now, versioned)
        return count + await self._uploads(bucket, rules, now)

    async def _prefix(self, bucket: str, prefix: str, rules: list[Mapping[str, Any]], now: float,
                      versioned: bool) -> int:
        count = 0
        key_marker, version_marker = "", ""
        group: list[ObjectMeta] = []
        while True:
            page = await self.store.list_versions(bucket, prefix=prefix, key_marker=key_marker,
                                                  version_id_marker=version_marker, max_keys=PAGE)
            for meta in page.objects:
                if group and group[0].key != meta.key:
                    count += await self._key(bucket, rules, group, now, versioned)
                    group = []
                group.append(meta)
            if not page.truncated:
                break
            key_marker, version_marker = page.next_marker or "", page.next_version_marker or ""
        if group:
            count += await self._key(bucket, rules, group, now, versioned)
        return count

    async def _key(self, bucket: str, rules: list[Mapping[str, Any]], versions: list[ObjectMeta], now: float,
                   versioned: bool) -> int:
        expire_current, gone = plan(rules, versions, now, versioned)
        count = 0
        for meta in gone:
            await self.store.delete(bucket, meta.key, meta.version_id, event_prefix="LifecycleExpiration")
            count += 1
        if expire_current:
            if not versioned:
                # "null" names whatever version was written last: not one put since the listing
                try:
                    latest = await self.store.head(bucket, versions[0].key)
                except errors.S3Error:
                    return count
                if latest.uid != versions[0].uid:
                    return count
            await self.store.delete(bucket, versions[0].key, None if versioned else "null",
                                    event_prefix="LifecycleExpiration")
            count += 1
        return count

    async def _uploads(self, bucket: str, rules: list[Mapping[str, Any]], now: float) -> int:
        aborting = [r for r in rules if r.get("Status") == "Enabled" and r.get("AbortIncompleteMultipartUpload")]
        if not aborting:
            return 0
        count = 0
        key_marker, upload_marker = "", ""
        while True:
            uploads, truncated = await self.store.uploads(bucket, key_marker=key_marker,
                                                          upload_id_marker=upload_marker, max_uploads=PAGE)
            for upload in uploads:
                for rule in aborting:
                    days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
                    if upload.key.startswith(_prefix(rule)) and now >= due(upload.initiated, days):
                        with contextlib.suppress(errors.S3Error):
                            await self.store.abort(upload)
                            count += 1
                        break
            if not truncated or not uploads:
                return count
            key_marker, upload_marker = uploads[-1].key, uploads[-1].upload_id
