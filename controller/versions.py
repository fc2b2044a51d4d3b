"""Published versions: what a version snapshots of $LATEST, and when publishing makes a new one.

A version is an immutable copy of $LATEST's code and configuration. Function-wide settings are
not part of it: reserved concurrency stays on $LATEST (and bounds all versions together), and provisioned
concurrency and event-invoke configuration are set per version afterwards. Like AWS, publishing a
function whose code and configuration did not change since its last version returns that
version instead of a new one; the comparison is a digest of the snapshot, kept on the version.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

from controller.registry import now_timestamp
from kambda.aws import errors
from kambda.v1.function_pb2 import FunctionConfig

#: Fields that are bookkeeping or function-wide, never part of what a version snapshots.
NOT_SNAPSHOTTED = (
    "version", "last_modified", "revision_id", "state", "state_reason", "state_reason_code",
    "last_update_status", "reserved_concurrency", "provisioned_concurrency", "provisioned_last_modified",
    "event_invoke_config", "last_published", "published_from", "tags",
)


def snapshot(latest: FunctionConfig) -> FunctionConfig:
    """$LATEST without what a version does not carry."""
    copy = FunctionConfig()
    copy.CopyFrom(latest)
    for field in NOT_SNAPSHOTTED:
        copy.ClearField(field)
    return copy


def digest(latest: FunctionConfig) -> str:
    return hashlib.sha256(snapshot(latest).SerializeToString(deterministic=True)).hexdigest()


def check_preconditions(latest: FunctionConfig, code_sha256_b64: str, revision_id: str) -> None:
    """PublishVersion's CodeSha256 and RevisionId, checked against $LATEST as AWS does."""
    if revision_id and revision_id != latest.revision_id:
        raise errors.PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the "
            "GetFunction/GetAlias API to retrieve the latest Revision Id")
    current = base64.b64encode(bytes.fromhex(latest.code_sha256)).decode()
    if code_sha256_b64 and code_sha256_b64 != current:
        raise errors.InvalidParameterValue(
            f"CodeSHA256 ({code_sha256_b64}) is different from current CodeSHA256 in $LATEST ({current}). "
            "Please try again.")


def unchanged_since(latest: FunctionConfig, newest: FunctionConfig | None) -> bool:
    """True when ``newest`` (the highest published version, if any) was published from $LATEST as it is."""
    return newest is not None and newest.published_from == digest(latest)


def new_version(latest: FunctionConfig, number: int, description: str | None) -> FunctionConfig:
    version = snapshot(latest)
    version.version = str(number)
    if description is not None:
        version.description = description
    version.published_from = digest(latest)
    version.last_modified = now_timestamp()
    version.revision_id = str(uuid.uuid4())
    version.state = "Active"
    version.last_update_status = "Successful"
    return version
