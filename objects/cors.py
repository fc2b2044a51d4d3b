"""Bucket CORS as S3 applies it: the configuration, preflights and the headers of cross-origin requests.

A request is cross-origin when it carries ``Origin``. The first rule (in the configuration's order) whose
AllowedOrigins match the origin (``*`` alone, or one ``*`` wildcard inside an origin), whose AllowedMethods hold the
method (a preflight's ``Access-Control-Request-Method``) and whose AllowedHeaders match every header a preflight's
``Access-Control-Request-Headers`` names (case-insensitively, one ``*`` wildcard each) decides. A preflight
(``OPTIONS``) is answered from the rule or refused with S3's 403 ``AccessForbidden``; an actual request is served
either way, the rule's headers added when one matches (S3 never refuses it for CORS: the browser does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from objects.errors import InvalidRequest, MalformedXML, S3Error

METHODS = frozenset(("GET", "PUT", "HEAD", "POST", "DELETE"))
MAX_RULES = 100
NOT_ALLOWED = ("CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, "
               "request method / Access-Control-Request-Method or Access-Control-Request-Headers are not "
               "whitelisted by the resource's CORS spec.")
NOT_ENABLED = "CORSResponse: CORS is not enabled for this bucket."
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
#: :func:`preflight`'s ``rules`` for a bucket that does not exist.
NO_BUCKET: list[dict[str, Any]] = []


class AccessForbidden(S3Error):
    code = "AccessForbidden"
    status = 403


class BadRequest(S3Error):
    code = "BadRequest"
    status = 400


def _glob(text: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in text.split("*")),
                      re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


@dataclass(frozen=True)
class Rule:
    origins: tuple[re.Pattern[str], ...]
    any_origin: bool
    methods: tuple[str, ...]
    headers: tuple[re.Pattern[str], ...]
    expose: tuple[str, ...]
    max_age: int | None

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Rule:
        origins = list(doc.get("AllowedOrigins") or ())
        return cls(origins=tuple(_glob(o, False) for o in origins), any_origin="*" in origins,
                   methods=tuple(doc.get("AllowedMethods") or ()),
                   headers=tuple(_glob(h, True) for h in doc.get("AllowedHeaders") or ()),
                   expose=tuple(doc.get("ExposeHeaders") or ()), max_age=doc.get("MaxAgeSeconds"))

    def matches(self, origin: str, method: str, requested: Sequence[str]) -> bool:
        return (method in self.methods
                and (self.any_origin or any(p.fullmatch(origin) for p in self.origins))
                and all(any(p.fullmatch(h) for p in self.headers) for h in requested))

    def headers_for(self, origin: str, requested: Sequence[str]) -> dict[str, str]:
        """The response headers this rule gives a request from ``origin`` (``requested``: a preflight's
        Access-Control-Request-Headers, echoed lower case)."""
        out = {"Access-Control-Allow-Origin": "*" if self.any_origin else origin,
               "Access-Control-Allow-Methods": ", ".join(self.methods), "Vary": VARY}
        if not self.any_origin:
            out["Access-Control-Allow-Credentials"] = "true"
        if requested:
            out["Access-Control-Allow-Headers"] = ", ".join(requested)
        if self.expose:
            out["Access-Control-Expose-Headers"] = ", ".join(self.expose)
        if self.max_age is not None:
            out["Access-Control-Max-Age"] = str(self.max_age)
        return out


def validate(config: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """PutBucketCors' ``CORSConfiguration`` to the rules stored: MalformedXML without rules, AllowedOrigin or
    AllowedMethod; InvalidRequest for a method S3 does not allow or more than one wildcard."""
    rules = (config or {}).get("CORSRules") or []
    if not rules or len(rules) > MAX_RULES:
        raise MalformedXML("The XML you provided was not well-formed or did not validate against our published "
                           "schema")
    for rule in rules:
        if not rule.get("AllowedOrigins") or not rule.get("AllowedMethods"):
            raise MalformedXML("The XML you provided was not well-formed or did not validate against our "
                               "published schema")
        for method in rule["AllowedMethods"]:
            if method not in METHODS:
                raise InvalidRequest(f"Found unsupported HTTP method in CORS config. Unsupported method is "
                                     f"{method}")
        for origin in rule["AllowedOrigins"]:
            if origin.count("*") > 1:
                raise InvalidRequest(f'AllowedOrigin "{origin}" can not have more than one wildcard.')
        for header in rule.get("AllowedHeaders") or ():
            if header.count("*") > 1:
                raise InvalidRequest(f'AllowedHeader "{header}" can not have more than one wildcard.')
        age = rule.get("MaxAgeSeconds")
        if age is not None and age < 0:
            raise MalformedXML("The XML you provided was not well-formed or did not validate against our "
                               "published schema")
    return [dict(rule) for rule in rules]


def requested_headers(value: str | None) -> list[str]:
    return [h.strip().lower() for h in (value or "").split(",") if h.strip()]


def match(rules: Sequence[Mapping[str, Any]], origin: str, method: str,
          requested: Sequence[str] = ()) -> Rule | None:
    for doc in rules:
        rule = Rule.of(doc)
        if rule.matches(origin, method, requested):
            return rule
    return None


def preflight(rules: Sequence[Mapping[str, Any]] | None, headers: Mapping[str, str]) -> dict[str, str]:
    """The headers answering an OPTIONS preflight, or S3's error: BadRequest without Origin or
    Access-Control-Request-Method, AccessForbidden when CORS is off or no rule matches."""
    origin = headers.get("Origin")
    if not origin:
        raise BadRequest("Insufficient information. Origin request header needed.")
    method = headers.get("Access-Control-Request-Method")
    if not method:
        raise BadRequest("Invalid Access-Control-Request-Method: null")
    if method not in METHODS:
        raise BadRequest(f"Invalid Access-Control-Request-Method: {method}")
    if rules is NO_BUCKET:
        raise AccessForbidden("CORSResponse: Bucket not found", Method=method, ResourceType="BUCKET")
    if not rules:
        raise AccessForbidden(NOT_ENABLED, Method=method, ResourceType="BUCKET")
    requested = requested_headers(headers.get("Access-Control-Request-Headers"))
    rule = match(rules, origin, method, requested)
    if rule is None:
        raise AccessForbidden(NOT_ALLOWED, Method=method, ResourceType="OBJECT")
    return rule.headers_for(origin, requested)


def actual(rules: Sequence[Mapping[str, Any]] | None, origin: str, method: str) -> dict[str, str]:
    """The CORS headers an actual (non-preflight) request from ``origin`` gets: none when no rule matches."""
    rule = match(rules or (), origin, method)
    return rule.headers_for(origin, ()) if rule is not None else {}
