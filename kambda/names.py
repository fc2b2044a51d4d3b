"""Function names, qualifiers and ARNs, validated the way AWS Lambda validates them.

``{name}`` in the API may be a bare name, a partial ARN (``123456789012:function:NAME``) or a full
ARN (``arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]``).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

from kambda.aws import errors

LATEST = "$LATEST"

#: Request ids need to be unique, not unpredictable: a PRNG seeded from the OS (and reseeded in a
#: forked child) costs a quarter of ``str(uuid.uuid4())``, which asks the kernel for every id.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)
_VERSION_4 = (0x4 << 76) | (0x2 << 62)
_NOT_VERSION_BITS = ~((0xF << 76) | (0x3 << 62))


def new_request_id() -> str:
    """A fresh request id, shaped like AWS's: a random (version 4, RFC 4122 variant) UUID."""
    h = f"{_ids.getrandbits(128) & _NOT_VERSION_BITS | _VERSION_4:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

#: The pattern AWS quotes in its ValidationException for 'functionName'.
FUNCTION_NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?"
    r"(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)
QUALIFIER_PATTERN = r"(|[a-zA-Z0-9$_-]+)"
_FUNCTION_NAME_RE = re.compile(FUNCTION_NAME_PATTERN)
_QUALIFIER_RE = re.compile(QUALIFIER_PATTERN)
_BARE_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_NAME_OR_ARN = 170


@dataclass(frozen=True)
class FunctionRef:
    """A resolved reference: the bare name and the qualifier (None when none was given)."""

    name: str
    qualifier: str | None

    @property
    def version(self) -> str:
        return self.qualifier or LATEST


@dataclass(frozen=True)
class Arns:
    """Builds ARNs for one region and account."""

    region: str
    account: str

    def function(self, name: str, qualifier: str | None = None) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"
        return f"{arn}:{qualifier}" if qualifier else arn

    def role(self, name: str = "kambda-default") -> str:
        return f"arn:aws:iam::{self.account}:role/{name}"

    def event_bus(self, name: str) -> str:
        return f"arn:aws:events:{self.region}:{self.account}:event-bus/{name}"

    def rule(self, event_bus: str, name: str) -> str:
        """A rule's ARN: ``rule/NAME`` on the default bus, ``rule/BUS/NAME`` on others (as AWS)."""
        path = name if event_bus == "default" else f"{event_bus}/{name}"
        return f"arn:aws:events:{self.region}:{self.account}:rule/{path}"


def _validation_error(field: str, value: str, constraint: str) -> errors.Validation:
    return errors.Validation(
        f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
        f"{constraint}"
    )


def parse_function(name_or_arn: str, qualifier: str | None = None) -> FunctionRef:
    """Resolve ``{name}`` and an optional Qualifier parameter to a :class:`FunctionRef`."""
    if not name_or_arn or len(name_or_arn) > MAX_NAME_OR_ARN:
        raise _validation_error(
            "functionName", name_or_arn,
            f"Member must have length less than or equal to {MAX_NAME_OR_ARN}"
            if name_or_arn else "Member must have length greater than or equal to 1",
        )
    match = _FUNCTION_NAME_RE.fullmatch(name_or_arn)
    if match is None:
        raise _validation_error(
            "functionName", name_or_arn,
            f"Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}",
        )
    name, arn_qualifier = match.group(7), match.group(9)
    if not _BARE_NAME_RE.fullmatch(name):
        if len(name) > 64:
            raise errors.InvalidParameterValue(
                f"1 validation error detected: Value '{name}' at 'functionName' failed to satisfy "
                "constraint: Member must have length less than or equal to 64"
            )
        raise _validation_error(
            "functionName", name_or_arn,
            f"Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}",
        )
    if qualifier is not None:
        check_qualifier(qualifier)
        if qualifier == "":
            qualifier = None
    if arn_qualifier and qualifier and arn_qualifier != qualifier:
        raise errors.InvalidParameterValue(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    return FunctionRef(name=name, qualifier=arn_qualifier or qualifier)


def check_qualifier(qualifier: str) -> None:
    if len(qualifier) > 128 or not _QUALIFIER_RE.fullmatch(qualifier):
        raise _validation_error(
            "qualifier", qualifier, f"Member must satisfy regular expression pattern: {QUALIFIER_PATTERN}"
        )


#: AWS's pattern for an alias name: not all digits (those are version numbers).
ALIAS_NAME_PATTERN = r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)"
_ALIAS_NAME_RE = re.compile(ALIAS_NAME_PATTERN)
_VERSION_RE = re.compile(r"[0-9]+")


def is_published_version(qualifier: str | None) -> bool:
    """A published version's number ("1", "2", ...), as opposed to $LATEST or an alias name."""
    return bool(qualifier) and _VERSION_RE.fullmatch(qualifier or "") is not None


def is_alias_name(qualifier: str | None) -> bool:
    return bool(qualifier) and len(qualifier or "") <= 128 and _ALIAS_NAME_RE.fullmatch(qualifier or "") is not None


def pick_version(function_version: str, additional_version_weights: Mapping[str, float], draw: float) -> str:
    """The version one call to an alias runs, for a uniform ``draw`` in [0, 1): each additional version
    with its weight, the alias's own version with what is left (the gateway and the event router both
    route through aliases with it)."""
    for version, weight in additional_version_weights.items():
        if draw < weight:
            return version
        draw -= weight
    return function_version


def check_alias_name(name: str) -> None:
    if not 1 <= len(name) <= 128:
        raise _validation_error("name", name, "Member must have length between 1 and 128")
    if not _ALIAS_NAME_RE.fullmatch(name):
        raise _validation_error("name", name, f"Member must satisfy regular expression pattern: {ALIAS_NAME_PATTERN}")


def check_function_version(version: str, field: str = "functionVersion") -> None:
    if not 1 <= len(version) <= 1024 or not (version == LATEST or _VERSION_RE.fullmatch(version)):
        raise _validation_error(field, version, r"Member must satisfy regular expression pattern: (\$LATEST|[0-9]+)")


def subject_token(version: str) -> str:
    """A NATS-subject-safe token for a version: ``$LATEST`` becomes ``latest``."""
    return "latest" if version == LATEST else version


#: A destination that is a NATS subject rather than a function.
NATS_DESTINATION = "arn:kambda:nats:::"


def destination_arn_error(arn: str) -> str | None:
    """Why ``arn`` cannot be a destination (or dead-letter target), or None when it can."""
    if arn.startswith(NATS_DESTINATION):
        subject = arn[len(NATS_DESTINATION):]
        if not subject or any(c in subject for c in " \t*>") or subject.startswith("kambda."):
            return f"'{subject}' is not a NATS subject a destination may publish to"
        return None
    if arn.startswith("arn:aws:lambda:"):
        try:
            parse_function(arn)
        except errors.KambdaError as exc:
            return exc.message
        return None
    return f"Destination ARN {arn} is not a Lambda function ARN or an arn:kambda:nats::: subject"
