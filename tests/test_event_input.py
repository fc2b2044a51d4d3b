"""What a target receives: Input, InputPath and InputTransformer's placeholder rules."""

from __future__ import annotations

import json

import pytest

from events import input_transform as event_input
from kambda.aws import errors

EVENT = {"version": "0", "id": "e1", "source": "shop", "detail-type": "order", "account": "1", "time": "t",
         "region": "r", "resources": [], "detail": {"name": 'Ada "the first"', "n": 3, "items": [1, 2],
                                                   "none": None}}


def render(target: dict) -> object:
    return json.loads(event_input.render(target, EVENT, "arn:rule", "rule", "2024-01-01T00:00:00Z"))


def transformer(template: str, **paths: str) -> dict:
    return {"InputTransformer": {"InputPathsMap": paths, "InputTemplate": template}}


def test_the_event_itself_input_and_input_path() -> None:
    assert render({}) == EVENT
    assert render({"Input": '{"fixed": [1]}'}) == {"fixed": [1]}
    assert render({"InputPath": "$.detail.items"}) == [1, 2]
    assert render({"InputPath": "$.detail.missing"}) is None


@pytest.mark.parametrize(("template", "paths", "expected"), [
    # outside quotes in a JSON template: the value as JSON (strings get quotes)
    ('{"name": <name>, "n": <n>, "items": <items>}', {"name": "$.detail.name", "n": "$.detail.n",
                                                       "items": "$.detail.items"},
     {"name": 'Ada "the first"', "n": 3, "items": [1, 2]}),
    # inside quotes: the value's text, escaped
    ('{"text": "<name> has <n> and <items>"}', {"name": "$.detail.name", "n": "$.detail.n",
                                                "items": "$.detail.items"},
     {"text": 'Ada "the first" has 3 and [1, 2]'}),
    # null and a path that matches nothing
    ('{"a": <none>, "b": <missing>, "c": "<missing>"}', {"none": "$.detail.none", "missing": "$.detail.x"},
     {"a": None, "b": None, "c": ""}),
    # a text template reaches the function as a JSON string, values inserted as text
    ("<src> sent <n>", {"src": "$.source", "n": "$.detail.n"}, "shop sent 3"),
    # reserved variables
    ('{"r": <aws.events.rule-name>, "a": "<aws.events.rule-arn>", "t": <aws.events.event.ingestion-time>, '
     '"e": <aws.events.event>, "j": <aws.events.event.json>}', {},
     {"r": "rule", "a": "arn:rule", "t": "2024-01-01T00:00:00Z",
      "e": {k: v for k, v in EVENT.items() if k != "detail"}, "j": EVENT}),
])
def test_input_transformer(template, paths, expected) -> None:
    event_input.validate(transformer(template, **paths))
    assert render(transformer(template, **paths)) == expected


@pytest.mark.parametrize(("target", "reason"), [
    ({"Input": "{", "InputPath": "$"}, "Only one of"),
    ({"Input": "{not json"}, "not valid JSON"),
    ({"InputPath": "detail"}, "JSONPath"),
    ({"InputPath": "$.[[["}, "not a valid JSONPath"),
    (transformer("<x>"), "does not define"),
    (transformer("<x>", **{"aws.events.rule-name": "$.a"}), "reserved"),
    ({"InputTransformer": {"InputPathsMap": {}}}, "InputTemplate"),
])
def test_bad_target_input_is_refused(target, reason) -> None:
    with pytest.raises(errors.Validation, match=reason):
        event_input.validate(target)
