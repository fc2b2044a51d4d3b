"""Route keys and route matching, the way API Gateway's HTTP APIs do it.

A route key is ``$default`` or ``METHOD /path``: METHOD is one of the HTTP methods or ``ANY``; a
path segment is a literal, a parameter ``{name}`` (one whole segment), or, as the last segment
only, a greedy parameter ``{name+}`` (one or more segments).

When several routes match a request, the most specific wins (API Gateway's order): a literal
segment beats a parameter, which beats a greedy parameter, compared from the left; for the same
path, a route naming the method beats ``ANY``; ``$default`` catches what nothing else matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote

from kambda.aws import errors

DEFAULT = "$default"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
_PARAM = re.compile(r"\{([A-Za-z0-9._-]+)(\+?)\}")
_LITERAL = re.compile(r"[A-Za-z0-9._~!$&'()*,;=:@%-]+")
MAX_ROUTE_KEY = 512

LITERAL, PARAM, GREEDY = 2, 1, 0

T = TypeVar("T")


@dataclass(frozen=True)
class RouteKey:
    text: str
    method: str                              # "" for $default
    segments: tuple[tuple[int, str], ...]    # (kind, literal text or parameter name)

    @property
    def greedy(self) -> bool:
        return bool(self.segments) and self.segments[-1][0] == GREEDY

    def rank(self) -> tuple[int, tuple[int, ...], int]:
        """Bigger is more specific: no greedy tail, then segment kinds from the left, then the method."""
        return (0 if self.greedy else 1, tuple(kind for kind, _ in self.segments), 0 if self.method == "ANY" else 1)


def _bad(key: str, why: str) -> errors.BadRequest:
    return errors.BadRequest(f"Unable to create route {key!r}: {why}")


def parse_route_key(key: object) -> RouteKey:
    """Validate a route key; a bad one is a BadRequestException naming what is wrong."""
    if not isinstance(key, str) or not key:
        raise errors.BadRequest("RouteKey is required: '$default' or 'METHOD /path', e.g. 'GET /users/{id}'")
    if len(key) > MAX_ROUTE_KEY:
        raise _bad(key[:40] + "...", f"a route key has at most {MAX_ROUTE_KEY} characters")
    if key == DEFAULT:
        return RouteKey(key, "", ())
    method, sep, path = key.partition(" ")
    if not sep:
        raise _bad(key, "a route key is '$default' or 'METHOD /path'")
    if method not in METHODS:
        raise _bad(key, f"the method must be one of {', '.join(METHODS)}")
    if not path.startswith("/"):
        raise _bad(key, "the path must start with '/'")
    if path == "/":
        return RouteKey(key, method, ())
    parts = path[1:].split("/")
    segments: list[tuple[int, str]] = []
    names: set[str] = set()
    for i, part in enumerate(parts):
        if part == "":
            raise _bad(key, "the path has an empty segment (a doubled or trailing '/')")
        param = _PARAM.fullmatch(part)
        if param is not None:
            name, plus = param.groups()
            if plus and i != len(parts) - 1:
                raise _bad(key, f"the greedy path variable {{{name}+}} must be the last segment")
            if name in names:
                raise _bad(key, f"the path variable {{{name}}} appears twice")
            names.add(name)
            segments.append((GREEDY if plus else PARAM, name))
        elif "{" in part or "}" in part:
            raise _bad(key, f"the segment {part!r} must be a literal or a whole {{variable}}")
        elif not _LITERAL.fullmatch(part):
            raise _bad(key, f"the segment {part!r} has characters a path cannot carry")
        else:
            segments.append((LITERAL, part))
    return RouteKey(key, method, tuple(segments))


def _match(key: RouteKey, method: str, parts: list[str]) -> dict[str, str] | None:
    if key.method != "ANY" and key.method != method:
        return None
    params: dict[str, str] = {}
    segments = key.segments
    if key.greedy:
        if len(parts) < len(segments):
            return None
    elif len(parts) != len(segments):
        return None
    for i, (kind, text) in enumerate(segments):
        part = parts[i]
        if kind == LITERAL:
            if part != text:
                return None
        elif kind == PARAM:
            if part == "":
                return None
            params[text] = unquote(part)
        else:
            rest = "/".join(parts[i:])
            if rest == "":
                return None
            params[text] = unquote(rest)
    return params


class Router(Generic[T]):
    """Routes in precedence order; ``match`` returns the winner and its path parameters."""

    def __init__(self, routes: Iterable[tuple[RouteKey, T]]) -> None:
        ordered = sorted(routes, key=lambda pair: pair[0].rank(), reverse=True)
        self._routes = [pair for pair in ordered if pair[0].method]
        self._default = next((value for key, value in ordered if not key.method), None)

    def match(self, method: str, raw_path: str) -> tuple[T, dict[str, str]] | None:
        """``raw_path`` as sent (percent-encoded); literals compare encoded, parameters come decoded."""
        parts = [] if raw_path in ("", "/") else raw_path[1:].split("/")
        for key, value in self._routes:
            params = _match(key, method, parts)
            if params is not None:
                return value, params
        if self._default is not None:
            return self._default, {}
        return None
