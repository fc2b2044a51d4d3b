"""PublishVersion, ListVersionsByFunction and the alias operations of the Lambda API (2015-03-31).

The controller does the checking and the storing; this module maps AWS's JSON to the protobuf
requests and back, and puts what changed into the gateway's cache at once, so that the next
invoke through this gateway already sees a new alias.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from functions import render
from functions.registry_cache import RegistryCache
from kambda import rpc
from kambda.aws import auth, errors
from kambda.aws.bodies import json_body
from kambda.names import Arns, check_alias_name, check_function_version, parse_function
from kambda.v1 import controller_pb2 as pb
from kambda.v1.controller_pb2_grpc import ControllerStub
from kambda.v1.function_pb2 import Alias

BASE = "/2015-03-31/functions/{name}"


class VersionsApi:
    def __init__(self, controller: ControllerStub, cache: RegistryCache, arns: Arns) -> None:
        self._controller = controller
        self._cache = cache
        self._arns = arns

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(BASE + "/versions", self.publish_version),
            web.get(BASE + "/versions", self.list_versions),
            web.post(BASE + "/aliases", self.create_alias),
            web.get(BASE + "/aliases", self.list_aliases),
            web.get(BASE + "/aliases/{alias}", self.get_alias),
            web.put(BASE + "/aliases/{alias}", self.update_alias),
            web.delete(BASE + "/aliases/{alias}", self.delete_alias),
        ]

    # -- versions ------------------------------------------------------------------------------

    @auth.requires("lambda:PublishVersion")
    async def publish_version(self, request: web.Request) -> web.Response:
        name = parse_function(request.match_info["name"]).name
        body = await json_body(request)
        publish = pb.PublishVersionRequest(
            name=name, code_sha256=render.expect(body, "CodeSha256", str, "a string") or "",
            revision_id=render.expect(body, "RevisionId", str, "a string") or "")
        description = render.expect(body, "Description", str, "a string")
        if description is not None:
            publish.description = description
        version = await rpc.call(self._controller.PublishVersion, publish)
        self._cache.put(version)
        return _json(render.configuration(version, self._arns, qualified=True), status=201)

    @auth.requires("lambda:ListVersionsByFunction")
    async def list_versions(self, request: web.Request) -> web.Response:
        name = parse_function(request.match_info["name"]).name
        answer = await rpc.call(self._controller.ListVersions, pb.ListVersionsRequest(
            name=name, marker=request.query.get("Marker", ""), max_items=_max_items(request)))
        body: dict[str, Any] = {
            "Versions": [render.configuration(c, self._arns, qualified=True) for c in answer.functions]}
        if answer.next_marker:
            body["NextMarker"] = answer.next_marker
        return _json(body)

    # -- aliases -------------------------------------------------------------------------------

    @auth.requires("lambda:CreateAlias")
    async def create_alias(self, request: web.Request) -> web.Response:
        name = parse_function(request.match_info["name"]).name
        body = await json_body(request)
        alias, _ = _parse_alias(body)
        alias_name = render.expect(body, "Name", str, "a string")
        if alias_name is None:
            raise errors.InvalidParameterValue("Name is required")
        if alias.function_version == "":
            raise errors.InvalidParameterValue("FunctionVersion is required")
        alias.name = alias_name
        return _json(self._alias(await self._call("create", name, alias)), status=201)

    @auth.requires("lambda:GetAlias")
    async def get_alias(self, request: web.Request) -> web.Response:
        name, alias_name = self._names(request)
        return _json(self._alias(await self._call("get", name, Alias(name=alias_name))))

    @auth.requires("lambda:UpdateAlias")
    async def update_alias(self, request: web.Request) -> web.Response:
        name, alias_name = self._names(request)
        body = await json_body(request)
        alias, fields = _parse_alias(body)
        alias.name = alias_name
        revision = render.expect(body, "RevisionId", str, "a string") or ""
        return _json(self._alias(await self._call("update", name, alias, fields=fields, revision_id=revision)))

    @auth.requires("lambda:DeleteAlias")
    async def delete_alias(self, request: web.Request) -> web.Response:
        name, alias_name = self._names(request)
        await rpc.call(self._controller.Aliases, pb.AliasRequest(op="delete", name=name, alias=Alias(name=alias_name)))
        self._cache.forget(name, alias_name)
        return web.Response(status=204)

    @auth.requires("lambda:ListAliases")
    async def list_aliases(self, request: web.Request) -> web.Response:
        name = parse_function(request.match_info["name"]).name
        version = request.query.get("FunctionVersion", "")
        if version:
            check_function_version(version)
        answer = await rpc.call(self._controller.Aliases, pb.AliasRequest(
            op="list", name=name, function_version=version, marker=request.query.get("Marker", ""),
            max_items=_max_items(request)))
        body: dict[str, Any] = {"Aliases": [self._alias(a) for a in answer.aliases]}
        if answer.next_marker:
            body["NextMarker"] = answer.next_marker
        return _json(body)

    async def _call(self, op: str, name: str, alias: Alias, **more: Any) -> Alias:
        answer = await rpc.call(self._controller.Aliases, pb.AliasRequest(op=op, name=name, alias=alias, **more))
        found = answer.aliases[0]
        if op != "get":
            self._cache.put_alias(found)
        return found

    @staticmethod
    def _names(request: web.Request) -> tuple[str, str]:
        alias_name = request.match_info["alias"]
        check_alias_name(alias_name)
        return parse_function(request.match_info["name"]).name, alias_name

    def _alias(self, alias: Alias) -> dict[str, Any]:
        """AliasConfiguration as AWS returns it."""
        body: dict[str, Any] = {
            "AliasArn": self._arns.function(alias.function, alias.name), "Name": alias.name,
            "FunctionVersion": alias.function_version, "Description": alias.description,
            "RevisionId": alias.revision_id,
        }
        if alias.additional_version_weights:
            body["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.additional_version_weights)}
        return body


def _parse_alias(body: dict[str, Any]) -> tuple[Alias, list[str]]:
    """An Alias from a CreateAlias / UpdateAlias body, and the fields the body set."""
    alias = Alias()
    fields: list[str] = []
    version = render.expect(body, "FunctionVersion", str, "a string")
    if version is not None:
        alias.function_version = version
        fields.append("function_version")
    description = render.expect(body, "Description", str, "a string")
    if description is not None:
        alias.description = description
        fields.append("description")
    routing = render.expect(body, "RoutingConfig", dict, "an object")
    if routing is not None:
        weights = routing.get("AdditionalVersionWeights") or {}
        if not isinstance(weights, dict):
            raise errors.InvalidParameterValue("RoutingConfig.AdditionalVersionWeights must map versions to weights")
        for key, weight in weights.items():
            if not isinstance(weight, int | float) or isinstance(weight, bool):
                raise errors.InvalidParameterValue(f"The weight of version {key} must be a number")
            alias.additional_version_weights[str(key)] = float(weight)
        fields.append("additional_version_weights")
    return alias, fields


def _max_items(request: web.Request) -> int:
    return render.max_items(request.query.get("MaxItems", ""), 50)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
