"""PublishVersion, ListVersionsByFunction and the alias operations of the Lambda API (2015-03-31).

Operations of the front door. The controller does the checking and the storing; this module maps the
parsed params to the protobuf requests and back, and puts what changed into the gateway's cache at
once, so that the next invoke through this gateway already sees a new alias.
"""

from __future__ import annotations

from typing import Any

from functions import render
from functions.api import function_resource
from functions.registry_cache import RegistryCache
from kambda import rpc
from kambda.aws import errors
from kambda.aws.front import Context, Front
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

    def register(self, front: Front) -> None:
        """The version and alias operations through the front door, authorized on the function's ARN (an alias
        operation: the alias's ARN, as AWS checks it)."""
        function = function_resource(self._arns)
        for name, handler in {"PublishVersion": self.publish_version, "ListVersionsByFunction": self.list_versions,
                              "CreateAlias": self.create_alias, "ListAliases": self.list_aliases}.items():
            front.register("lambda", name, handler, function)
        for name, handler in {"GetAlias": self.get_alias, "UpdateAlias": self.update_alias,
                              "DeleteAlias": self.delete_alias}.items():
            front.register("lambda", name, handler, self._alias_resource)

    def _alias_resource(self, ctx: Context, params: dict[str, Any]) -> list[str]:
        name, alias_name = self._names(params)
        return [self._arns.function(name, alias_name)]

    # -- versions ------------------------------------------------------------------------------

    async def publish_version(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = parse_function(params["FunctionName"]).name
        publish = pb.PublishVersionRequest(name=name, code_sha256=params.get("CodeSha256") or "",
                                           revision_id=params.get("RevisionId") or "")
        if params.get("Description") is not None:
            publish.description = params["Description"]
        version = await rpc.call(self._controller.PublishVersion, publish)
        self._cache.put(version)
        return render.configuration(version, self._arns, qualified=True)

    async def list_versions(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = parse_function(params["FunctionName"]).name
        answer = await rpc.call(self._controller.ListVersions, pb.ListVersionsRequest(
            name=name, marker=params.get("Marker", ""), max_items=render.max_items(params.get("MaxItems"), 50)))
        body: dict[str, Any] = {
            "Versions": [render.configuration(c, self._arns, qualified=True) for c in answer.functions]}
        if answer.next_marker:
            body["NextMarker"] = answer.next_marker
        return body

    # -- aliases -------------------------------------------------------------------------------

    async def create_alias(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = parse_function(params["FunctionName"]).name
        alias, _ = _parse_alias(params)
        alias_name = params.get("Name")
        if alias_name is None:
            raise errors.InvalidParameterValue("Name is required")
        if alias.function_version == "":
            raise errors.InvalidParameterValue("FunctionVersion is required")
        alias.name = alias_name
        return self._alias(await self._call("create", name, alias))

    async def get_alias(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name, alias_name = self._names(params)
        return self._alias(await self._call("get", name, Alias(name=alias_name)))

    async def update_alias(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name, alias_name = self._names(params)
        alias, fields = _parse_alias(params)
        alias.name = alias_name
        return self._alias(await self._call("update", name, alias, fields=fields,
                                            revision_id=params.get("RevisionId") or ""))

    async def delete_alias(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name, alias_name = self._names(params)
        await rpc.call(self._controller.Aliases, pb.AliasRequest(op="delete", name=name, alias=Alias(name=alias_name)))
        self._cache.forget(name, alias_name)
        return {}

    async def list_aliases(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = parse_function(params["FunctionName"]).name
        version = params.get("FunctionVersion") or ""
        if version:
            check_function_version(version)
        answer = await rpc.call(self._controller.Aliases, pb.AliasRequest(
            op="list", name=name, function_version=version, marker=params.get("Marker", ""),
            max_items=render.max_items(params.get("MaxItems"), 50)))
        body: dict[str, Any] = {"Aliases": [self._alias(a) for a in answer.aliases]}
        if answer.next_marker:
            body["NextMarker"] = answer.next_marker
        return body

    async def _call(self, op: str, name: str, alias: Alias, **more: Any) -> Alias:
        answer = await rpc.call(self._controller.Aliases, pb.AliasRequest(op=op, name=name, alias=alias, **more))
        found = answer.aliases[0]
        if op != "get":
            self._cache.put_alias(found)
        return found

    @staticmethod
    def _names(params: dict[str, Any]) -> tuple[str, str]:
        alias_name = params["Name"]
        check_alias_name(alias_name)
        return parse_function(params["FunctionName"]).name, alias_name

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
