"""botocore's service models, loaded once, and the index that finds a request's operation in one.

A JSON-protocol request names its operation in ``X-Amz-Target`` and a Query request in ``Action``: a dict each.
A REST request names it by method and path, against ``requestUri`` templates such as
``/2015-03-31/functions/{FunctionName}/invocations`` (``{Label}`` one segment, ``{Label+}`` the rest of the path)
and ``/{Bucket}?uploads`` (a literal query part the request must carry). S3's model leaves some operations with
the same method and template (GetObject and ListParts; PutObject, UploadPart, CopyObject): they differ by
*required* query-string and header members (``uploadId``, ``x-amz-copy-source``), which count as conditions too.
A request falls back to the literal-only conditions when no candidate's full set holds, so a missing required
parameter is the handler's ValidationException rather than "unknown operation".

Most specific wins: more literal segments, then more literal query keys, then more required query keys and
headers, then fewer greedy labels, non-deprecated before deprecated, then by name. Candidates are bucketed by
method, first literal path segment and segment count, and within a bucket by the literal query keys, so a lookup
tries only the few templates that can match (S3's ``GET /{Bucket}/{Key+}`` without a query tries two, not fifty).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import botocore.loaders  # type: ignore[import-untyped]
from botocore.model import OperationModel, ServiceModel  # type: ignore[import-untyped]

#: The protocols the layer speaks, in the order botocore would pick one from a model's ``protocols`` list.
SUPPORTED = ("json", "rest-json", "rest-xml", "query")
#: A query part that names the operation only for the SDK's benefit (newer S3 models): not a condition.
HINT_KEYS = frozenset(("x-id",))
_LABEL = re.compile(r"\{([^}]+)\}")


@functools.cache
def _loader() -> botocore.loaders.Loader:
    return botocore.loaders.Loader()


@functools.cache
def service_model(name: str) -> ServiceModel:
    """botocore's model of ``name`` (e.g. ``lambda``, ``s3``), loaded once per process."""
    return ServiceModel(_loader().load_service_model(name, "service-2"), service_name=name)


def protocol_of(service: ServiceModel) -> str:
    """The protocol kambda speaks for ``service``: the first of its model's ``protocols`` that is supported."""
    found = service.__dict__.get("_kambda_protocol")
    if found is not None:
        return str(found)
    md = service.metadata
    for protocol in md.get("protocols") or (md["protocol"],):
        if protocol in SUPPORTED:
            service.__dict__["_kambda_protocol"] = str(protocol)
            return str(protocol)
    raise ValueError(f"{service.service_name}: no supported protocol in {md.get('protocols') or md['protocol']}")


@dataclass(frozen=True)
class UriTemplate:
    """One operation's ``requestUri``, compiled."""

    operation: OperationModel
    regex: re.Pattern[str]
    labels: tuple[str, ...]             # regex group i+1 is labels[i] (the template's names)
    first: str | None                   # the first path segment when literal, else None
    depth: int | None                   # how many segments the path has; None with a greedy label
    literal_query: tuple[tuple[str, str | None], ...]
    required_query: tuple[str, ...]     # required querystring members' names on the wire
    required_headers: tuple[str, ...]   # lower case
    rank: tuple[Any, ...] = field(compare=False)
    #: Whether any query or header condition applies (most templates have none).
    conditioned: bool = field(default=False, compare=False)

    def match_path(self, raw_path: str) -> dict[str, str] | None:
        """The labels' decoded values when the (percent-encoded) path fits, else None."""
        found = self.regex.fullmatch(raw_path)
        if found is None:
            return None
        return {label: unquote(value) if "%" in value else value
                for label, value in zip(self.labels, found.groups(), strict=True)}

    def conditions_hold(self, query: Mapping[str, Any], headers: Mapping[str, str], strict: bool) -> bool:
        for key, value in self.literal_query:
            if key not in query or (value is not None and _first(query[key]) != value):
                return False
        if strict:
            for key in self.required_query:
                if key not in query:
                    return False
            for name in self.required_headers:
                if name not in headers:
                    return False
        return True


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


@functools.cache
def uri_template(operation: OperationModel) -> UriTemplate:
    uri = operation.http.get("requestUri", "/")
    path, _, query = uri.partition("?")
    literal_query: list[tuple[str, str | None]] = []
    for part in query.split("&") if query else ():
        key, eq, value = part.partition("=")
        if key and key not in HINT_KEYS:
            literal_query.append((key, value if eq else None))
    pattern, labels, pos, greedy = [], [], 0, 0
    for found in _LABEL.finditer(path):
        pattern.append(re.escape(path[pos:found.start()]))
        name = found.group(1)
        if name.endswith("+"):
            pattern.append("(.+)")
            greedy += 1
            name = name[:-1]
        else:
            pattern.append("([^/]+)")
        labels.append(name)
        pos = found.end()
    tail = path[pos:]
    if len(path) > 1:  # a trailing slash is optional, as AWS's front ends treat it
        pattern.append(re.escape(tail.rstrip("/")) + "/?")
    else:
        pattern.append(re.escape(tail))
    segments = [s for s in path.split("/") if s]
    first = segments[0] if segments and "{" not in segments[0] else None
    required_query: list[str] = []
    required_headers: list[str] = []
    shape = operation.input_shape
    if shape is not None:
        for name in shape.required_members:
            member = shape.members[name]
            location = member.serialization.get("location")
            wire = str(member.serialization.get("name", name))
            if location == "querystring" and member.type_name != "map":
                required_query.append(wire)
            elif location == "header":
                required_headers.append(wire.lower())
    literal_segments = sum(1 for s in segments if "{" not in s)
    depth = None if greedy else len(segments)
    rank = (-literal_segments, -len(literal_query), -(len(required_query) + len(required_headers)), greedy,
            bool(getattr(operation, "deprecated", False)), operation.name)
    return UriTemplate(operation, re.compile("".join(pattern)), tuple(labels), first, depth, tuple(literal_query),
                       tuple(required_query), tuple(required_headers), rank,
                       bool(literal_query or required_query or required_headers))


@dataclass
class _Bucket:
    by_query_key: dict[str, list[UriTemplate]] = field(default_factory=dict)
    plain: list[UriTemplate] = field(default_factory=list)

    def add(self, template: UriTemplate) -> None:
        if template.literal_query:
            self.by_query_key.setdefault(template.literal_query[0][0], []).append(template)
        else:
            self.plain.append(template)

    def candidates(self, query: Mapping[str, Any]) -> list[UriTemplate]:
        if not self.by_query_key or not query:
            return self.plain
        found = list(self.plain)
        for key in query:
            found.extend(self.by_query_key.get(key, ()))
        return found


class OperationIndex:
    """Finds an operation of one service by name, by X-Amz-Target, by Query Action, or by method and path."""

    def __init__(self, service: ServiceModel) -> None:
        self.service = service
        self.protocol = protocol_of(service)
        self._by_name = {name: service.operation_model(name) for name in service.operation_names}
        prefix = service.metadata.get("targetPrefix")
        self._by_target = {f"{prefix}.{name}": op for name, op in self._by_name.items()} if prefix else {}
        self._buckets: dict[tuple[str, str | None, int | None], _Bucket] = {}
        self.first_segments: set[str] = set()
        if self.protocol.startswith("rest"):
            for op in self._by_name.values():
                template = uri_template(op)
                method = op.http.get("method", "POST").upper()
                self._buckets.setdefault((method, template.first, template.depth), _Bucket()).add(template)
                if template.first is not None:
                    self.first_segments.add(template.first)
            for bucket in self._buckets.values():
                bucket.plain.sort(key=lambda t: t.rank)

    def by_name(self, name: str) -> OperationModel | None:
        return self._by_name.get(name)

    def by_target(self, target: str) -> OperationModel | None:
        return self._by_target.get(target)

    def match(self, method: str, raw_path: str, query: Mapping[str, Any],
              headers: Mapping[str, str]) -> tuple[OperationModel, dict[str, str]] | None:
        """The most specific operation whose template fits, with its labels; None when none does."""
        method = method.upper()
        segment = raw_path[1:].partition("/")[0] if raw_path.startswith("/") else ""
        depth = len([s for s in raw_path.split("/") if s])
        candidates: list[UriTemplate] = []
        buckets = self._buckets
        for key in ((method, segment, depth), (method, segment, None), (method, None, depth), (method, None, None)):
            if key[1] == "" or (bucket := buckets.get(key)) is None:
                continue
            found = bucket.candidates(query)
            if found:
                candidates = found if not candidates else candidates + found
        if not candidates:
            return None
        if len(candidates) > 1:
            candidates.sort(key=lambda t: t.rank)
        for strict in (True, False):
            for template in candidates:
                if template.conditioned and not template.conditions_hold(query, headers, strict):
                    continue
                labels = template.match_path(raw_path)
                if labels is not None:
                    return template.operation, labels
            if not any(t.conditioned for t in candidates):
                break
        return None


@functools.cache
def index(name: str) -> OperationIndex:
    """The operation index of service ``name``, built once per process."""
    return OperationIndex(service_model(name))
