"""The subset of IAM policies kambda evaluates, and its built-in roles.

A policy is ``{"Version": ..., "Statement": [{"Effect": "Allow"|"Deny", "Action": ..., "Resource":
...}]}``; Action and Resource are a string or a list of strings with ``*`` (any run) and ``?`` (one
character) wildcards. As in IAM: actions match case-insensitively, resources case-sensitively; an
explicit Deny wins over any Allow; what no statement allows is denied.

A credential has a role, a policy, or both. With both, a request must be allowed by each (the role
is a ceiling that the policy narrows, like an IAM permissions boundary), and a Deny in either wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class PolicyError(ValueError):
    """A policy document kambda cannot evaluate; the message says which part."""


def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


@dataclass(frozen=True)
class Statement:
    allow: bool
    actions: tuple[re.Pattern[str], ...]
    resources: tuple[re.Pattern[str], ...]

    def matches(self, action: str, resource: str) -> bool:
        return (any(p.fullmatch(action) for p in self.actions)
                and any(p.fullmatch(resource) for p in self.resources))


def _strings(statement: dict[str, Any], key: str, where: str) -> list[str]:
    value = statement.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where}: {key} must be a non-empty string or list of strings")
    return value


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]

    @classmethod
    def parse(cls, document: Any) -> Policy:
        if not isinstance(document, dict):
            raise PolicyError("a policy must be a JSON object with a Statement list")
        raw = document.get("Statement")
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise PolicyError("a policy needs a non-empty Statement list")
        statements = []
        for i, statement in enumerate(raw):
            where = f"Statement[{i}]"
            if not isinstance(statement, dict):
                raise PolicyError(f"{where} must be an object")
            unsupported = set(statement) - {"Sid", "Effect", "Action", "Resource"}
            if unsupported:
                raise PolicyError(f"{where}: kambda does not evaluate {', '.join(sorted(unsupported))} "
                                  "(supported: Sid, Effect, Action, Resource)")
            effect = statement.get("Effect")
            if effect not in ("Allow", "Deny"):
                raise PolicyError(f"{where}: Effect must be Allow or Deny, not {effect!r}")
            statements.append(Statement(
                allow=effect == "Allow",
                actions=tuple(_pattern(a, True) for a in _strings(statement, "Action", where)),
                resources=tuple(_pattern(r, False) for r in _strings(statement, "Resource", where))))
        return cls(tuple(statements))

    def decide(self, action: str, resource: str) -> bool | None:
        """False on an explicit Deny, True when allowed, None when no statement speaks."""
        allowed = None
        for statement in self.statements:
            if statement.matches(action, resource):
                if not statement.allow:
                    return False
                allowed = True
        return allowed


def _allow(actions: Iterable[str]) -> Policy:
    return Policy.parse({"Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]})


#: admin: everything. deployer: every Lambda and EventBridge operation, invoking included (one tests
#: what one deploys), kambda's read-only endpoints (status, logs, metrics) and HTTP routes, but nothing
#: else the platform may add. invoker: invoke functions (directly, asynchronously, by URL), read their
#: configuration, put events; never create, change or delete.
ROLES: dict[str, Policy] = {
    "admin": _allow(["*"]),
    "deployer": _allow(["lambda:*", "events:*", "kambda:Get*", "kambda:*Route", "kambda:*Routes"]),
    "invoker": _allow(["lambda:InvokeFunction", "lambda:InvokeAsync", "lambda:InvokeFunctionUrl",
                       "lambda:GetFunction*", "events:PutEvents"]),
}


@dataclass(frozen=True)
class Permissions:
    """What one credential may do: its role's policy and its own, both of which must allow."""

    policies: tuple[Policy, ...]

    @classmethod
    def of(cls, role: str | None, document: Any | None) -> Permissions:
        policies = []
        if role is not None:
            if role not in ROLES:
                raise PolicyError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
            policies.append(ROLES[role])
        if document is not None:
            policies.append(Policy.parse(document))
        if not policies:
            raise PolicyError("a credential needs a role, a policy, or both")
        return cls(tuple(policies))

    def allows(self, action: str, resource: str) -> bool:
        decisions = [p.decide(action, resource) for p in self.policies]
        return all(d is True for d in decisions)

    def denies(self, action: str, resource: str) -> bool:
        """An explicit Deny: no resource policy can grant the action then."""
        return any(p.decide(action, resource) is False for p in self.policies)


ADMIN = Permissions((ROLES["admin"],))
