"""Lambda function URLs: the FunctionUrlConfig API (2021-10-31) and the CORS rules the gateway applies.

Each (function, qualifier) has one URL config, stored in the ``kambda_http`` bucket under its
url-id, which is derived from the pair (so it is stable: deleting and creating the config again
gives the same URL). FunctionUrl is the URL a caller can use: ``http://HOST:PORT/url/<url-id>/``,
or ``http://<url-id>.lambda-url.<region>.<KAMBDA_URL_DOMAIN>[:PORT]/`` when a domain is set.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from apis.config import HttpConfig, UrlConfig, url_id
from functions.api import function_resource
from functions.registry_cache import RegistryCache
from kambda.aws import errors
from kambda.aws.front import Context, Front
from kambda.names import Arns, parse_function
from kambda.settings import Site

BASE = "/2021-10-31/functions/{name}"
AUTH_TYPES = ("NONE", "AWS_IAM")
INVOKE_MODES = ("BUFFERED", "RESPONSE_STREAM")
#: The qualifier of a function URL is an alias name (not a version number, not $LATEST).
ALIAS_PATTERN = r"((?!^\d+$)^[0-9a-zA-Z-_]+$)"
_ALIAS_RE = re.compile(r"(?!\d+$)[0-9a-zA-Z_-]{1,128}")
CORS_METHODS = ("GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "*")
#: Cors list field -> (the name AWS quotes in errors, most items, longest item).
_CORS_LISTS = {"AllowOrigins": ("cors.allowOrigins", 100, 253), "AllowMethods": ("cors.allowMethods", 6, 6),
               "AllowHeaders": ("cors.allowHeaders", 100, 1024), "ExposeHeaders": ("cors.exposeHeaders", 100, 1024)}


def _invalid(field: str, value: object, constraint: str) -> errors.Validation:
    return errors.Validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
                             f"constraint: {constraint}")


def parse_cors(value: object) -> dict[str, Any]:
    """A Cors object checked field by field, with AWS's validation messages."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidParameterValue("Cors must be an object")
    cors: dict[str, Any] = {}
    for key, item in value.items():
        if key in _CORS_LISTS:
            field, most, longest = _CORS_LISTS[key]
            if not isinstance(item, list) or not all(isinstance(v, str) for v in item):
                raise errors.InvalidParameterValue(f"Cors.{key} must be a list of strings")
            if len(item) > most:
                raise _invalid(field, item, f"Member must have length less than or equal to {most}")
            for v in item:
                if not 1 <= len(v) <= longest:
                    raise _invalid(field, item, f"Member must satisfy constraint: [Member must have length "
                                                f"less than or equal to {longest}, Member must have length "
                                                f"greater than or equal to 1]")
            if key == "AllowMethods":
                bad = [v for v in item if v.upper() not in CORS_METHODS]
                if bad:
                    raise _invalid(field, item, f"Member must satisfy enum value set: [{', '.join(CORS_METHODS)}]")
                item = [v.upper() for v in item]
            cors[key] = item
        elif key == "MaxAge":
            if not isinstance(item, int) or isinstance(item, bool):
                raise errors.InvalidParameterValue("Cors.MaxAge must be an integer")
            if not 0 <= item <= 86400:
                raise _invalid("cors.maxAge", item, "Member must have value less than or equal to 86400"
                               if item > 0 else "Member must have value greater than or equal to 0")
            cors[key] = item
        elif key == "AllowCredentials":
            if not isinstance(item, bool):
                raise errors.InvalidParameterValue("Cors.AllowCredentials must be a boolean")
            cors[key] = item
        else:
            raise errors.InvalidParameterValue(f"Unknown field Cors.{key}")
    return cors


def is_preflight(request: web.Request) -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def cors_headers(cors: dict[str, Any], origin: str | None, preflight: bool) -> dict[str, str]:
    """The CORS headers for a request from ``origin`` (none when the origin is not allowed)."""
    allowed = cors.get("AllowOrigins") or []
    if not origin or not ("*" in allowed or origin.lower() in (o.lower() for o in allowed)):
        return {}
    credentials = bool(cors.get("AllowCredentials"))
    headers = {"Access-Control-Allow-Origin": "*" if "*" in allowed and not credentials else origin,
               "Vary": "Origin"}
    if credentials:
        headers["Access-Control-Allow-Credentials"] = "true"
    if preflight:
        if cors.get("AllowMethods"):
            headers["Access-Control-Allow-Methods"] = ",".join(cors["AllowMethods"])
        if cors.get("AllowHeaders"):
            headers["Access-Control-Allow-Headers"] = ",".join(cors["AllowHeaders"])
        if "MaxAge" in cors:
            headers["Access-Control-Max-Age"] = str(cors["MaxAge"])
    elif cors.get("ExposeHeaders"):
        headers["Access-Control-Expose-Headers"] = ",".join(cors["ExposeHeaders"])
    return headers


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class FunctionUrls:
    def __init__(self, config: HttpConfig, cache: RegistryCache, settings: Site,
                 now: Callable[[], str] = _now) -> None:
        self._config = config
        self._cache = cache
        self._settings = settings
        self._arns = Arns(settings.region, settings.account)
        self._now = now

    def register(self, front: Front) -> None:
        """The URL config operations through the front door, authorized on the function's ARN."""
        function = function_resource(self._arns)
        for name, handler in {"CreateFunctionUrlConfig": self.create, "GetFunctionUrlConfig": self.get,
                              "UpdateFunctionUrlConfig": self.update, "DeleteFunctionUrlConfig": self.delete,
                              "ListFunctionUrlConfigs": self.list}.items():
            front.register("lambda", name, handler, function)

    async def _ref(self, params: dict[str, Any]) -> tuple[str, str]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        qualifier = ref.qualifier or ""
        if qualifier and not _ALIAS_RE.fullmatch(qualifier):
            raise _invalid("qualifier", qualifier, f"Member must satisfy regular expression pattern: {ALIAS_PATTERN}")
        if await self._cache.get(ref.name) is None:
            raise errors.function_not_found(self._arns.function(ref.name))
        if qualifier and await self._cache.get_alias(ref.name, qualifier) is None:
            raise errors.function_not_found(self._arns.function(ref.name, qualifier))
        return ref.name, qualifier

    def url(self, request: web.Request, uid: str) -> str:
        """The URL a caller uses, built from the address this request reached."""
        if self._settings.url_domain:
            port = f":{request.url.port}" if request.url.explicit_port else ""
            return f"{request.scheme}://{uid}.lambda-url.{self._settings.region}.{self._settings.url_domain}{port}/"
        return f"{request.scheme}://{request.host}/url/{uid}/"

    def render(self, request: web.Request, config: UrlConfig, modified: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "FunctionUrl": self.url(request, config.url_id),
            "FunctionArn": self._arns.function(config.function, config.qualifier or None),
            "AuthType": config.auth_type, "CreationTime": config.created, "InvokeMode": config.invoke_mode,
        }
        if config.cors:
            body["Cors"] = config.cors
        if modified:
            body["LastModifiedTime"] = config.modified
        return body

    def _not_found(self) -> errors.ResourceNotFound:
        return errors.ResourceNotFound("The resource you requested does not exist.")

    async def create(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        request = ctx.request
        name, qualifier = await self._ref(params)
        body = params
        auth_type = _enum(body.get("AuthType"), "authType", AUTH_TYPES, required=True)
        now = self._now()
        config = UrlConfig(url_id=url_id(self._settings.account, self._settings.region, name, qualifier),
                           function=name, qualifier=qualifier, auth_type=auth_type, cors=parse_cors(body.get("Cors")),
                           invoke_mode=_enum(body.get("InvokeMode"), "invokeMode", INVOKE_MODES) or "BUFFERED",
                           created=now, modified=now)
        arn = self._arns.function(name, qualifier or None)
        await self._config.create(f"url.{config.url_id}", config, errors.ResourceConflict(
            f"Failed to create function url config for [functionArn = {arn}]. Error message:  "
            "FunctionUrlConfig exists for this Lambda function"))
        return self.render(request, config, modified=False)

    async def get(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        request = ctx.request
        name, qualifier = await self._ref(params)
        config = self._config.urls.get(url_id(self._settings.account, self._settings.region, name, qualifier))
        if config is None:
            raise self._not_found()
        return self.render(request, config)

    async def update(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        request = ctx.request
        name, qualifier = await self._ref(params)
        body = params
        changes: dict[str, Any] = {}
        if body.get("AuthType") is not None:
            changes["auth_type"] = _enum(body["AuthType"], "authType", AUTH_TYPES)
        if "Cors" in body:
            changes["cors"] = parse_cors(body["Cors"])
        if body.get("InvokeMode") is not None:
            changes["invoke_mode"] = _enum(body["InvokeMode"], "invokeMode", INVOKE_MODES)
        changes["modified"] = self._now()
        uid = url_id(self._settings.account, self._settings.region, name, qualifier)
        config = await self._config.modify(f"url.{uid}", lambda old: replace(old, **changes), self._not_found())
        assert isinstance(config, UrlConfig)
        return self.render(request, config)

    async def delete(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name, qualifier = await self._ref(params)
        uid = url_id(self._settings.account, self._settings.region, name, qualifier)
        await self._config.delete(f"url.{uid}", self._not_found())
        return {}

    async def list(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        request = ctx.request
        name, _ = await self._ref(params)
        most = params.get("MaxItems", 50)
        if not 1 <= most <= 50:
            raise _invalid("maxItems", most, "Member must have value less than or equal to 50")
        marker = params.get("Marker") or ""
        configs = sorted((c for c in self._config.urls.values() if c.function == name), key=lambda c: c.url_id)
        page = [c for c in configs if c.url_id > marker][:most]
        body: dict[str, Any] = {"FunctionUrlConfigs": [self.render(request, c) for c in page]}
        if page and page[-1].url_id != configs[-1].url_id:
            body["NextMarker"] = page[-1].url_id
        return body

    async def forget_function(self, name: str) -> None:
        """DeleteFunction takes the function's URL configs with it, as on AWS."""
        for config in [c for c in self._config.urls.values() if c.function == name]:
            try:
                await self._config.delete(f"url.{config.url_id}", self._not_found())
            except errors.ResourceNotFound:
                pass


def _enum(value: object, field: str, allowed: tuple[str, ...], required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or value not in allowed:
        raise _invalid(field, value, f"Member must satisfy enum value set: [{', '.join(allowed)}]")
    return value
