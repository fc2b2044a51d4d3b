"""kambda's HTTP API management: routes under ``/_kambda/v1/http/routes``, and the routes file.

A route is ``{"RouteKey": "GET /users/{id}", "FunctionName": "users-fn", "Qualifier": "live",
"PayloadFormatVersion": "2.0"}`` (FunctionName may be an ARN, Qualifier and PayloadFormatVersion
are optional). Errors use API Gateway's codes: BadRequestException (a bad route key or field),
ConflictException (the route key exists), NotFoundException (no such route).

The routes file (KAMBDA_ROUTES_FILE, ``kambda up --routes FILE``) is YAML, or JSON, which YAML
reads too: ``{"routes": [<route>, ...]}`` with the same fields. Each gateway adds or updates those
routes when it starts; routes added through the API are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from apis.config import HttpConfig, Route, is_id, route_id
from apis.routes import parse_route_key
from kambda.aws import auth, errors
from kambda.aws.bodies import json_body
from kambda.names import Arns, check_qualifier, parse_function

BASE = "/_kambda/v1/http/routes"
PAYLOAD_FORMATS = ("2.0", "1.0")
FIELDS = ("RouteKey", "FunctionName", "Qualifier", "PayloadFormatVersion")


class RoutesFileError(ValueError):
    """The routes file cannot be used; the message names the file and the entry."""


def _payload_format(value: object) -> str:
    if value is None:
        return "2.0"
    if isinstance(value, float) and value in (1.0, 2.0):
        value = f"{value:.1f}"  # YAML reads an unquoted 1.0 as a number
    if value not in PAYLOAD_FORMATS:
        raise errors.BadRequest(f"PayloadFormatVersion must be 1.0 or 2.0, not {value!r}")
    return str(value)


def _target(body: dict[str, Any]) -> tuple[str, str]:
    name = body.get("FunctionName")
    if not isinstance(name, str) or not name:
        raise errors.BadRequest("FunctionName is required: the function (name or ARN) the route invokes")
    qualifier = body.get("Qualifier")
    if qualifier is not None and not isinstance(qualifier, str):
        raise errors.BadRequest("Qualifier must be a string")
    if qualifier:
        check_qualifier(qualifier)
    ref = parse_function(name, qualifier)
    return ref.name, ref.qualifier or ""


def parse_route(body: dict[str, Any], created: str) -> Route:
    """A route from an API body or a routes file entry, every field checked."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise errors.BadRequest(f"Unknown field(s) {', '.join(unknown)}; a route has {', '.join(FIELDS)}")
    key = parse_route_key(body.get("RouteKey"))
    function, qualifier = _target(body)
    return Route(route_id=route_id(key.text), route_key=key.text, function=function, qualifier=qualifier,
                 payload_format=_payload_format(body.get("PayloadFormatVersion")), created=created)


def load_routes_file(path: Path, created: str = "") -> list[Route]:
    created = created or _now()
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RoutesFileError(f"cannot read the routes file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise RoutesFileError(f"the routes file {path} is neither YAML nor JSON: {exc}") from None
    if document is None:
        return []
    if not isinstance(document, dict) or not isinstance(document.get("routes", []), list):
        raise RoutesFileError(f"the routes file {path} must be an object with a list 'routes'")
    routes: list[Route] = []
    for i, entry in enumerate(document.get("routes", [])):
        try:
            if not isinstance(entry, dict):
                raise errors.BadRequest("a route is an object")
            routes.append(parse_route(entry, created))
        except errors.KambdaError as exc:
            raise RoutesFileError(f"{path}: routes[{i}]: {exc.message}") from None
    return routes


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HttpRoutesApi:
    def __init__(self, config: HttpConfig, arns: Arns, now: Callable[[], str] = _now) -> None:
        self._config = config
        self._arns = arns
        self._now = now

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(BASE, self.list), web.post(BASE, self.create),
            web.get(BASE + "/{route_id}", self.get), web.put(BASE + "/{route_id}", self.update),
            web.delete(BASE + "/{route_id}", self.delete),
        ]

    def render(self, route: Route) -> dict[str, Any]:
        return {"RouteId": route.route_id, "RouteKey": route.route_key, "FunctionName": route.function,
                "Qualifier": route.qualifier or None,
                "Target": self._arns.function(route.function, route.qualifier or None),
                "PayloadFormatVersion": route.payload_format, "CreatedDate": route.created}

    def _missing(self, ident: str) -> errors.NotFound:
        return errors.NotFound(f"Invalid Route identifier specified {ident}")

    def _ident(self, request: web.Request) -> str:
        ident = request.match_info["route_id"]
        if not is_id(ident):
            raise self._missing(ident[:64])
        return ident

    @auth.requires("kambda:GetRoutes")
    async def list(self, request: web.Request) -> web.Response:
        routes = sorted(self._config.routes.values(), key=lambda r: r.route_key)
        return _json({"Items": [self.render(r) for r in routes]})

    @auth.requires("kambda:CreateRoute")
    async def create(self, request: web.Request) -> web.Response:
        route = parse_route(await json_body(request), self._now())
        await self._config.create(f"route.{route.route_id}", route, errors.Conflict(
            f"Unable to create route. A route with key {route.route_key} already exists for this API"))
        return _json(self.render(route), 201)

    @auth.requires("kambda:GetRoute")
    async def get(self, request: web.Request) -> web.Response:
        ident = self._ident(request)
        route = self._config.routes.get(ident)
        if route is None:
            raise self._missing(ident)
        return _json(self.render(route))

    @auth.requires("kambda:UpdateRoute")
    async def update(self, request: web.Request) -> web.Response:
        """Points a route at another target or payload format; the route key itself stays."""
        ident = self._ident(request)
        body = await json_body(request)
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise errors.BadRequest(f"Unknown field(s) {', '.join(unknown)}; a route has {', '.join(FIELDS)}")

        def change(old: Route) -> Route:
            if "RouteKey" in body and body["RouteKey"] != old.route_key:
                raise errors.BadRequest("RouteKey cannot change: delete the route and create a new one")
            merged = {**{"FunctionName": old.function, "Qualifier": old.qualifier}, **body}
            if "FunctionName" in body and "Qualifier" not in body:
                merged["Qualifier"] = None
            function, qualifier = _target(merged)
            fmt = _payload_format(body["PayloadFormatVersion"]) if "PayloadFormatVersion" in body \
                else old.payload_format
            return replace(old, function=function, qualifier=qualifier, payload_format=fmt)

        route = await self._config.modify(f"route.{ident}", change, self._missing(ident))
        assert isinstance(route, Route)
        return _json(self.render(route))

    @auth.requires("kambda:DeleteRoute")
    async def delete(self, request: web.Request) -> web.Response:
        ident = self._ident(request)
        await self._config.delete(f"route.{ident}", self._missing(ident))
        return web.Response(status=204)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")

