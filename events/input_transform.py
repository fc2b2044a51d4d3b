"""What a rule's target receives: the event, ``Input``, ``InputPath`` or ``InputTransformer``.

Validation (at PutTargets, in the gateway) and rendering (in the worker's router) live
together so that what is accepted is exactly what can be rendered.

InputTransformer follows EventBridge's rules: ``InputPathsMap`` names up to 100 JSONPath values;
``<name>`` in ``InputTemplate`` is replaced by the value. Inside a JSON string literal the value
is inserted as string content (escaped); outside one, as JSON (a string gets its quotes) when the
template is a JSON object or array, or as plain text when the template is text. A path that
matches nothing gives ``null`` (empty inside a string). The reserved names are
``aws.events.rule-arn``, ``aws.events.rule-name``, ``aws.events.event.ingestion-time``,
``aws.events.event`` (the event without ``detail``) and ``aws.events.event.json`` (all of it).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from jsonpath_ng import parse as jsonpath_parse
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError

from kambda.aws import errors

RESERVED = ("aws.events.rule-arn", "aws.events.rule-name", "aws.events.event.ingestion-time",
            "aws.events.event", "aws.events.event.json")
MAX_PATHS = 100
_PLACEHOLDER = re.compile(r"<([^<>\s]+)>")
_VAR_NAME = re.compile(r"[A-Za-z0-9_\-.]{1,256}")


@lru_cache(maxsize=4096)
def _compiled(path: str) -> Any:
    return jsonpath_parse(path)


def check_path(path: object, where: str) -> str:
    if not isinstance(path, str) or not path.startswith("$"):
        raise errors.Validation(f"{where} must be a JSONPath starting with $, not {path!r}")
    try:
        _compiled(path)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:
        raise errors.Validation(f"{where} is not a valid JSONPath: {exc}") from None
    return path


def validate(target: dict[str, Any]) -> None:
    """Raise ValidationException when a target's input settings cannot be rendered."""
    given = [k for k in ("Input", "InputPath", "InputTransformer") if target.get(k) is not None]
    if len(given) > 1:
        raise errors.Validation("Only one of Input, InputPath, or InputTransformer can be provided.")
    if "Input" in given:
        try:
            json.loads(target["Input"])
        except (TypeError, ValueError):
            raise errors.Validation("Input is not valid JSON text.") from None
    if "InputPath" in given:
        check_path(target["InputPath"], "InputPath")
    transformer = target.get("InputTransformer")
    if transformer is not None:
        if not isinstance(transformer, dict) or not isinstance(transformer.get("InputTemplate"), str):
            raise errors.Validation("InputTransformer needs an InputTemplate string")
        paths = transformer.get("InputPathsMap") or {}
        if not isinstance(paths, dict) or len(paths) > MAX_PATHS:
            raise errors.Validation(f"InputPathsMap must be an object of at most {MAX_PATHS} entries")
        for name, path in paths.items():
            if name in RESERVED or not _VAR_NAME.fullmatch(name):
                raise errors.Validation(f"InputPathsMap key {name!r} is reserved or not a valid variable name")
            check_path(path, f"InputPathsMap[{name}]")
        for name in _PLACEHOLDER.findall(transformer["InputTemplate"]):
            if name not in paths and name not in RESERVED:
                raise errors.Validation(f"InputTemplate uses <{name}>, which InputPathsMap does not define")


def _select(path: str, event: dict[str, Any]) -> Any:
    found = [m.value for m in _compiled(path).find(event)]
    if not found:
        return None
    return found[0] if len(found) == 1 and "*" not in path else found


def render(target: dict[str, Any], event: dict[str, Any], rule_arn: str, rule_name: str,
           ingestion_time: str) -> bytes:
    """The payload the target's function is invoked with."""
    if target.get("Input") is not None:
        return str(target["Input"]).encode()
    if target.get("InputPath") is not None:
        return json.dumps(_select(target["InputPath"], event)).encode()
    transformer = target.get("InputTransformer")
    if transformer is None:
        return json.dumps(event).encode()
    values: dict[str, Any] = {name: _select(path, event)
                              for name, path in (transformer.get("InputPathsMap") or {}).items()}
    values.update({
        "aws.events.rule-arn": rule_arn, "aws.events.rule-name": rule_name,
        "aws.events.event.ingestion-time": ingestion_time,
        "aws.events.event": {k: v for k, v in event.items() if k != "detail"},
        "aws.events.event.json": event,
    })
    text = fill(transformer["InputTemplate"], values)
    try:
        json.loads(text)
    except ValueError:
        return json.dumps(text).encode()  # a text template reaches a function as a JSON string
    return text.encode()


def fill(template: str, values: dict[str, Any]) -> str:
    """Replace the placeholders of ``template``, quoting by where each one stands."""
    is_json = template.strip()[:1] in ("{", "[")
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(template):
        ch = template[i]
        match = _PLACEHOLDER.match(template, i) if ch == "<" else None
        if match and match.group(1) in values:
            value = values[match.group(1)]
            if in_string:
                text = value if isinstance(value, str) else ("" if value is None else json.dumps(value))
                out.append(json.dumps(text)[1:-1])
            elif isinstance(value, str) and not is_json:
                out.append(value)
            else:
                out.append(json.dumps(value))
            i = match.end()
            continue
        if ch == "\\" and in_string and i + 1 < len(template):
            out.append(template[i:i + 2])
            i += 2
            continue
        if ch == '"' and is_json:
            in_string = not in_string
        out.append(ch)
        i += 1
    return "".join(out)
