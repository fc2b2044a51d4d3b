"""Which service a request is for, when one endpoint serves them all.

In this order, the first that answers wins:

1. the SigV4 credential scope's service (``Credential=AKID/DATE/REGION/SERVICE/aws4_request`` in Authorization,
   or ``X-Amz-Credential`` for a presigned URL): what the client signed for is what it meant. A signing name that
   several registered services share (``dynamodb`` for DynamoDB and DynamoDB Streams, ``apigateway`` for both API
   Gateway versions) is settled by the target prefix or the path;
2. ``X-Amz-Target``'s prefix (``AWSEvents.PutEvents`` -> events);
3. the host: ``<bucket>.s3.<domain>`` (virtual-hosted S3, the bucket returned), ``s3.<domain>``,
   ``<api-id>.execute-api.<domain>``, ``<url-id>.lambda-url.<domain>``;
4. the path's first segment, from the registered REST services' templates (``/2015-03-31/`` is Lambda,
   ``/v2/`` API Gateway v2); then a Query ``Action`` (from the query string or a form body the caller read),
   each action indexed from the models (with ``Version`` to settle an action two services share);
5. the fallback service, if one was given (S3's path-style requests start with a bucket name, not a literal).

Only registered services are routed. Everything here is a pure function of what the request carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl

from kambda.aws import model

#: Services without a botocore model, reached by host: API Gateway's invoke endpoint and Lambda function URLs.
EXECUTE_API = "execute-api"
LAMBDA_URL = "lambda-url"
#: S3's static website endpoint: ``<bucket>.s3-website.<domain>``, ``<bucket>.s3-website-<region>.<domain>`` or
#: ``<bucket>.s3-website.<region>.<domain>`` (the bucket returned).
S3_WEBSITE = "s3-website"
PSEUDO = frozenset((EXECUTE_API, LAMBDA_URL, S3_WEBSITE))
_WEBSITE = re.compile(r"(.+)\.s3-website(?:[.-][a-z]{2}(?:-[a-z]+)+-\d+)?")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")


@dataclass(frozen=True)
class Route:
    service: str
    #: Which rule decided: scope, target, host, path, action or fallback.
    rule: str
    region: str | None = None
    bucket: str | None = None   # virtual-hosted S3
    api_id: str | None = None   # <api-id>.execute-api.<domain>
    url_id: str | None = None   # <url-id>.lambda-url.<domain>
    #: The access key of the credential scope, when the request is signed (not verified here).
    access_key: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Scope:
    access_key: str
    date: str
    region: str
    service: str


def credential_scope(headers: Mapping[str, str], query: Mapping[str, Any]) -> Scope | None:
    """The scope a request was signed for (header or presigned form), without verifying anything."""
    authorization = headers.get("Authorization")
    text = None
    if authorization:
        text = authorization
    else:
        credential = query.get("X-Amz-Credential")
        if isinstance(credential, list):
            credential = credential[0] if credential else None
        if credential:
            text = f"Credential={credential}"
    if text is None:
        return None
    found = _CREDENTIAL.search(text)
    if found is None:
        return None
    return Scope(*found.groups())


def action_of(query: Mapping[str, Any], content_type: str | None, body: bytes | None) -> tuple[str | None, str | None]:
    """A Query request's ``Action`` and ``Version``, from a form body or else the query string."""
    params: dict[str, str] = {}
    for key in ("Action", "Version"):
        value = query.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            params[key] = value
    if body and (content_type or "").startswith("application/x-www-form-urlencoded"):
        try:
            for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
                if key in ("Action", "Version"):
                    params[key] = value
        except UnicodeDecodeError:
            pass
    return params.get("Action"), params.get("Version")


class Router:
    """Routes among ``services`` (botocore names, plus ``execute-api`` and ``lambda-url``) on ``domain``."""

    def __init__(self, services: Iterable[str], domain: str = "localhost", fallback: str | None = None) -> None:
        self.services = tuple(dict.fromkeys(services))
        self.domain = domain.lower().strip(".")
        self.fallback = fallback if fallback in self.services else None
        self._by_signing: dict[str, list[str]] = {}
        self._by_target: dict[str, str] = {}
        self._by_segment: dict[str, str] = {}
        self._by_action: dict[str, list[str]] = {}
        self._versions: dict[str, str] = {}
        for name in self.services:
            if name in PSEUDO:
                self._by_signing.setdefault(name, []).append(name)
                continue
            index = model.index(name)
            md = index.service.metadata
            signing = md.get("signingName") or md.get("endpointPrefix") or name
            self._by_signing.setdefault(signing, []).append(name)
            if md.get("targetPrefix"):
                self._by_target.setdefault(md["targetPrefix"], name)
            for segment in sorted(index.first_segments):
                self._by_segment.setdefault(segment, name)
            if index.protocol == "query":
                self._versions[name] = md.get("apiVersion", "")
                for op in index.service.operation_names:
                    self._by_action.setdefault(op, []).append(name)

    def route(self, method: str, raw_path: str, query: Mapping[str, Any], headers: Mapping[str, str],
              action: str | None = None, version: str | None = None) -> Route | None:
        """The request's service, or None when no rule finds a registered one. ``action``/``version``: a Query
        form body's, when the caller has read one (see :func:`action_of`)."""
        scope = credential_scope(headers, query)
        found = self._route(method, raw_path, query, headers, action, version, scope)
        if found is not None and scope is not None:
            return replace(found, access_key=scope.access_key)
        return found

    def _route(self, method: str, raw_path: str, query: Mapping[str, Any], headers: Mapping[str, str],
               action: str | None, version: str | None, scope: Scope | None) -> Route | None:
        host = self._host(headers.get("Host", ""))
        region = scope.region if scope else None
        target = headers.get("X-Amz-Target")
        target_service = self._by_target.get(target.partition(".")[0]) if target else None
        path_service = self._by_segment.get(raw_path[1:].partition("/")[0]) if raw_path.startswith("/") else None
        if scope is not None:
            candidates = self._by_signing.get(scope.service)
            if candidates:
                if len(candidates) == 1:
                    chosen = candidates[0]
                elif target_service in candidates:
                    chosen = target_service
                elif path_service in candidates:
                    chosen = path_service
                else:
                    chosen = scope.service if scope.service in candidates else candidates[0]
                return self._with_host(Route(chosen, "scope", region), host)
        if target_service is not None:
            return Route(target_service, "target", region)
        if host is not None:
            kind, label = host
            if kind in self.services:
                return self._with_host(Route(kind, "host", region), host)
        if path_service is not None:
            return Route(path_service, "path", region)
        if action is None:
            action, version = action_of(query, None, None)
        if action is not None:
            owners = self._by_action.get(action, [])
            if len(owners) > 1 and version is not None:
                owners = [s for s in owners if self._versions.get(s) == version] or owners
            if owners:
                return Route(owners[0], "action", region)
        if self.fallback is not None:
            return Route(self.fallback, "fallback", region)
        return None

    def _host(self, host: str) -> tuple[str, str | None] | None:
        """("s3", bucket or None), ("execute-api", id), ("lambda-url", id), or None for a plain host."""
        name = host.lower()
        if name.startswith("["):
            return None
        name = name.rpartition(":")[0] if ":" in name else name
        suffix = "." + self.domain
        if not name.endswith(suffix):
            return None
        labels = name[: -len(suffix)]
        if labels == "s3":
            return ("s3", None)
        website = _WEBSITE.fullmatch(labels)
        if website is not None:
            return (S3_WEBSITE, website.group(1))
        for kind in ("s3", EXECUTE_API, LAMBDA_URL):
            marker = "." + kind
            if labels.endswith(marker) and len(labels) > len(marker):
                return (kind, labels[: -len(marker)])
        return None

    @staticmethod
    def _with_host(route: Route, host: tuple[str, str | None] | None) -> Route:
        if host is None or host[1] is None or host[0] != route.service:
            return route
        kind, label = host
        if kind in ("s3", S3_WEBSITE):
            return Route(route.service, route.rule, route.region, bucket=label)
        if kind == EXECUTE_API:
            return Route(route.service, route.rule, route.region, api_id=label)
        return Route(route.service, route.rule, route.region, url_id=label)
