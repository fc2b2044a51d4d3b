"""docs/openapi.yaml against a running gateway (issue 9, part 5): schemathesis generates requests
from the description (valid and invalid ones), and every answer must be no 5xx and must conform to
the description: a documented status, content type, headers (x-amzn-ErrorType on errors) and body.

EventBridge's JSON 1.1 API is one path (``POST /``) whose operation is the X-Amz-Target header, so
the description can only pair any target with any operation's body there; a second test checks each
operation on its own, with its target and the body schema the description gives that operation."""

from __future__ import annotations

import copy
import json
import urllib.request
from typing import Any

import boto3
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import REPO, Platform, make_zip, unique

SPEC = REPO / "docs" / "openapi.yaml"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
ECHO = "def handler(event, context):\n    return event\n"

AMZ_JSON = "application/x-amz-json-1.1"


@schemathesis.serializer(AMZ_JSON)
def _amz_json_body(ctx: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    """JSON 1.1 bodies are JSON under another media type."""
    return {"data": value if isinstance(value, bytes) else json.dumps(value).encode()}


@schemathesis.deserializer(AMZ_JSON)
def _amz_json_answer(ctx: schemathesis.DeserializationContext, response: Any) -> Any:
    return json.loads(response.content)


#: Examples over all operations together, per generation mode.
EXAMPLES = 1000
#: Examples per EventBridge operation, per generation mode.
EVENTS_EXAMPLES = 40


def _document() -> dict[str, Any]:
    return yaml.safe_load(SPEC.read_text())


def _events_operations() -> list[str]:
    target = next(p for p in _document()["paths"]["/"]["post"]["parameters"] if p["name"] == "X-Amz-Target")
    return [value.removeprefix("AWSEvents.") for value in target["schema"]["enum"]]


def test_the_description_is_a_valid_openapi_document() -> None:
    loaded = schemathesis.openapi.from_path(SPEC)
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) >= 46
    schemas = _document()["components"]["schemas"]
    for name in _events_operations():
        assert f"Events{name}Request" in schemas and f"Events{name}Response" in schemas


@pytest.fixture(scope="module")
def known_function(lam) -> str:  # type: ignore[no-untyped-def]
    """A function that exists, so that generated requests reach more than ResourceNotFound."""
    name = unique("openapi")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": ECHO})})
    yield name
    try:
        lam.delete_function(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        pass  # a generated DeleteFunction got there first


def _routes(platform: Platform) -> set[str]:
    code, body = platform.get_json("/_kambda/v1/http/routes")
    assert code == 200 and isinstance(body, dict), body
    return {route["RouteId"] for route in body["Items"]}


def _all(call: Any, key: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated EventBridge listing."""
    items: list[dict[str, Any]] = []
    while True:
        page = call(**params)
        items += page[key]
        if not page.get("NextToken"):
            return items
        params["NextToken"] = page["NextToken"]


@pytest.fixture
def leaves_no_routes_or_rules(platform: Platform) -> None:  # type: ignore[misc]
    """Generated requests create HTTP routes, buses and rules on the shared platform: they are removed
    afterwards, so that a generated ``$default`` route does not answer other tests' requests."""
    events = boto3.client("events", endpoint_url=platform.url, region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    routes_before = _routes(platform)
    buses_before = {bus["Name"] for bus in _all(events.list_event_buses, "EventBuses")}
    rules_before = {(bus, rule["Name"]) for bus in buses_before
                    for rule in _all(events.list_rules, "Rules", EventBusName=bus)}
    yield
    for route_id in _routes(platform) - routes_before:
        request = urllib.request.Request(f"{platform.url}/_kambda/v1/http/routes/{route_id}", method="DELETE")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 204
    for bus in [bus["Name"] for bus in _all(events.list_event_buses, "EventBuses")]:
        for rule in _all(events.list_rules, "Rules", EventBusName=bus):
            if (bus, rule["Name"]) in rules_before:
                continue
            ids = [t["Id"] for t in _all(events.list_targets_by_rule, "Targets", Rule=rule["Name"], EventBusName=bus)]
            if ids:
                events.remove_targets(Rule=rule["Name"], EventBusName=bus, Ids=ids)
            events.delete_rule(Name=rule["Name"], EventBusName=bus)
        if bus not in buses_before:
            events.delete_event_bus(Name=bus)


def _aimed_at(function: str, strategy: st.SearchStrategy[schemathesis.Case]) -> st.SearchStrategy[schemathesis.Case]:
    """Half of the cases name the existing function instead of a generated name."""

    def aim(case: schemathesis.Case, use_known: bool) -> schemathesis.Case:
        if use_known and case.path_parameters and "FunctionName" in case.path_parameters:
            case.path_parameters["FunctionName"] = function
        return case

    return st.builds(aim, strategy, st.booleans())


@pytest.mark.usefixtures("leaves_no_routes_or_rules")
def test_the_gateway_answers_as_described(platform: Platform, known_function: str) -> None:
    loaded = schemathesis.openapi.from_path(SPEC)
    loaded.config.update(base_url=platform.url)
    operations = [result.ok() for result in loaded.get_all_operations()]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        cases = _aimed_at(known_function, st.one_of([op.as_strategy(generation_mode=mode) for op in operations]))

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=cases)
        def answers_as_described(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=60)

        answers_as_described()


def _one_events_operation(name: str) -> dict[str, Any]:
    """The description with ``POST /`` narrowed to one EventBridge operation: its target, its body."""
    document = copy.deepcopy(_document())
    operation = document["paths"]["/"]["post"]
    operation["parameters"] = [{"name": "X-Amz-Target", "in": "header", "required": True,
                                "schema": {"type": "string", "enum": [f"AWSEvents.{name}"]}}]
    body = {"$ref": f"#/components/schemas/Events{name}Request"}
    operation["requestBody"]["content"] = {"application/x-amz-json-1.1": {"schema": body}}
    output = {"$ref": f"#/components/schemas/Events{name}Response"}
    operation["responses"]["200"]["content"] = {"application/x-amz-json-1.1": {"schema": output}}
    operation["operationId"] = name
    document["paths"] = {"/": document["paths"]["/"]}
    return document


@pytest.mark.usefixtures("leaves_no_routes_or_rules")
@pytest.mark.parametrize("name", _events_operations())
def test_each_eventbridge_operation_answers_as_described(platform: Platform, name: str) -> None:
    loaded = schemathesis.openapi.from_dict(_one_events_operation(name))
    loaded.config.update(base_url=platform.url)
    operation = next(result.ok() for result in loaded.get_all_operations())
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @settings(max_examples=EVENTS_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        @given(case=operation.as_strategy(generation_mode=mode))
        def answers_as_described(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=60)

        answers_as_described()
