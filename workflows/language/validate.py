"""Validation of a definition, as ValidateStateMachineDefinition and CreateStateMachine do it.

The definition is read as JSON and checked against a per-state-type field table (which fields a state of each
type and query language may and must have), not a text grammar: any valid JSON arrangement AWS accepts is
accepted. Then transitions, reachability, unique names, Choice rules, Retry/Catch, paths, intrinsic calls and
JSONata expressions. Locations are JSON pointers (``/States/A/Next``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from workflows.language import query
from workflows.language.checks import Checks, is_int, is_number
from workflows.language.choice import parse_timestamp
from workflows.language.errors import Diagnostic
from workflows.language.fields import (
    BRANCH_FIELDS,
    COMMON,
    DUPLICATE,
    DUPLICATE_LABEL,
    FIELDS,
    INVALID_JSON,
    INVALID_LABEL,
    INVALID_NAME,
    INVALID_RESOURCE,
    MACHINE_FIELDS,
    MAX_NAME,
    MAX_SECONDS,
    MISSING_DESCRIPTION,
    MISSING_END,
    MISSING_TARGET,
    NO_PATH,
    PROCESSOR_FIELDS,
    REQUIRED,
    SCHEMA,
    STATE_TYPES,
)
from workflows.language.model import JSONATA, JSONPATH
from workflows.language.paths import is_reference_path

# A Map Label: up to 40 characters, none of whitespace, brackets, wildcards, punctuation AWS reserves, or controls.
_LABEL = re.compile(r"[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]{1,40}")


def validate(definition: str) -> list[Diagnostic]:
    """The diagnostics of a definition's text (empty when it is valid)."""
    if not definition or not definition.strip():
        return [Diagnostic("ERROR", MISSING_DESCRIPTION, "The definition is empty", "")]
    try:
        raw = json.loads(definition)
    except ValueError as e:
        return [Diagnostic("ERROR", INVALID_JSON, f"Cannot parse the definition as JSON: {e}", "")]
    v = _Validator()
    if not isinstance(raw, dict):
        v.error(SCHEMA, "The definition must be a JSON object", "")
        return v.diagnostics
    v.machine(raw, "", MACHINE_FIELDS, JSONPATH)
    return v.diagnostics


class _Validator(Checks):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.labels: set[str] = set()

    def machine(self, raw: dict[str, Any], loc: str, allowed: set[str], inherited: str) -> None:
        for key in raw:
            if key not in allowed:
                self.error(SCHEMA, f'The field "{key}" is not supported by Step Functions', loc or "/")
        missing = [f for f in ("StartAt", "States") if f not in raw]
        if missing:
            self.error(SCHEMA, f"These fields are required: [{', '.join(missing)}]", loc or "/")
            return
        language = raw.get("QueryLanguage", inherited)
        if language not in (JSONPATH, JSONATA):
            self.error(
                SCHEMA,
                "The value for the field 'QueryLanguage' must be one of: [JSONPath, JSONata]",
                f"{loc}/QueryLanguage",
            )
            language = inherited
        if "TimeoutSeconds" in raw and not (is_int(raw["TimeoutSeconds"]) and 0 < raw["TimeoutSeconds"] <= MAX_SECONDS):
            self.error(
                SCHEMA, "The value for the field 'TimeoutSeconds' must be a positive integer", f"{loc}/TimeoutSeconds"
            )
        states = raw["States"]
        if not isinstance(states, dict) or not states:
            self.error(SCHEMA, "The field 'States' must be a non-empty object", f"{loc}/States")
            return
        start = raw["StartAt"]
        if not isinstance(start, str) or start not in states:
            self.error(MISSING_TARGET, f"Missing 'StartAt' target: {start}", f"{loc}/StartAt")
        for name, body in states.items():
            self.state(name, body, f"{loc}/States/{name}", language, states)
        self.reachability(start, states, loc)
        terminal = [
            b
            for b in states.values()
            if isinstance(b, dict) and (b.get("End") is True or b.get("Type") in ("Succeed", "Fail"))
        ]
        if not terminal:
            self.error(MISSING_END, "Workflow has no terminal state", f"{loc}/States")

    def state(self, name: str, body: Any, loc: str, machine_language: str, scope: dict[str, Any]) -> None:
        if name in self.names:
            self.error(DUPLICATE, f"Duplicate State name: {name}", loc)
        self.names.add(name)
        if not name or len(name) > MAX_NAME or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
            self.error(
                INVALID_NAME, f"State name '{name}' is invalid: 1 to {MAX_NAME} characters, no control characters", loc
            )
        if not isinstance(body, dict):
            self.error(SCHEMA, "A state must be a JSON object", loc)
            return
        typ = body.get("Type")
        if typ is None:
            self.error(SCHEMA, "These fields are required: [Type]", loc)
            return
        if typ not in STATE_TYPES:
            self.error(
                SCHEMA, f"The value for the field 'Type' must be one of: [{', '.join(STATE_TYPES)}]", f"{loc}/Type"
            )
            return
        language = body.get("QueryLanguage", machine_language)
        if language not in (JSONPATH, JSONATA):
            self.error(
                SCHEMA,
                "The value for the field 'QueryLanguage' must be one of: [JSONPath, JSONata]",
                f"{loc}/QueryLanguage",
            )
            return
        allowed = FIELDS[(typ, language)] | COMMON
        for key in body:
            if key not in allowed:
                self.error(SCHEMA, f'The field "{key}" is not supported by Step Functions', f"{loc}/{key}")
        missing = sorted(REQUIRED.get(typ, set()) - set(body))
        if typ == "Map" and "ItemProcessor" not in body and "Iterator" not in body:
            missing.append("ItemProcessor")
        if missing:
            self.error(SCHEMA, f"These fields are required: [{', '.join(missing)}]", loc)
        self.flow(typ, body, loc, scope)
        self.strings(body, loc, ("Comment", "Resource", "Default", "Error", "Cause", "Label"))
        resource = body.get("Resource")
        if (
            typ == "Task"
            and isinstance(resource, str)
            and not (resource.startswith("arn:") or query.is_expression(resource))
        ):
            self.error(INVALID_RESOURCE, f"Invalid Resource: {resource}", f"{loc}/Resource")
        if language == JSONPATH:
            self.jsonpath_fields(typ, body, loc)
        else:
            self.jsonata_fields(body, loc)
        self.numbers(typ, body, loc)
        for field in ("Retry", "Catch"):
            if field in body:
                self.retry_catch(field, body[field], f"{loc}/{field}", language, scope)
        if typ == "Choice" and "Choices" in body:
            self.choices(body["Choices"], f"{loc}/Choices", language, scope)
        if typ == "Parallel" and isinstance(body.get("Branches"), list):
            if not body["Branches"]:
                self.error(SCHEMA, "The field 'Branches' must contain at least one branch", f"{loc}/Branches")
            for i, branch in enumerate(body["Branches"]):
                self.sub_machine(branch, f"{loc}/Branches/{i}", BRANCH_FIELDS, language)
        if typ == "Map":
            self.map_state(body, loc, language)

    def flow(self, typ: str, body: dict[str, Any], loc: str, scope: dict[str, Any]) -> None:
        if typ in ("Choice", "Succeed", "Fail"):
            if "Default" in body:
                self.target(body["Default"], "Default", f"{loc}/Default", scope)
            return
        has_next, end = "Next" in body, body.get("End")
        if "End" in body and not isinstance(end, bool):
            self.error(SCHEMA, "The value for the field 'End' must be a boolean", f"{loc}/End")
        if has_next and end:
            self.error(SCHEMA, "The fields 'Next' and 'End' are mutually exclusive", loc)
        elif not has_next and not end:
            self.error(SCHEMA, "These fields are required: [Next, End] (one of them)", loc)
        if has_next:
            self.target(body["Next"], "Next", f"{loc}/Next", scope)

    def reachability(self, start: Any, states: dict[str, Any], loc: str) -> None:
        seen: set[str] = set()
        todo = [start] if isinstance(start, str) else []
        while todo:
            name = todo.pop()
            if name in seen or name not in states or not isinstance(states[name], dict):
                continue
            seen.add(name)
            body = states[name]
            targets = [body.get("Next"), body.get("Default")]
            for field in ("Choices", "Catch"):
                rules = body.get(field)
                if isinstance(rules, list):
                    targets += [c.get("Next") for c in rules if isinstance(c, dict)]
            todo.extend(t for t in targets if isinstance(t, str))
        for name in states:
            if name not in seen:
                self.error(MISSING_TARGET, f'State "{name}" is not reachable.', f"{loc}/States/{name}")

    def sub_machine(self, raw: Any, loc: str, allowed: set[str], language: str) -> None:
        if not isinstance(raw, dict):
            self.error(SCHEMA, "A branch must be a JSON object", loc)
            return
        self.machine(raw, loc, allowed, language)

    def map_state(self, body: dict[str, Any], loc: str, language: str) -> None:
        label = body.get("Label")
        if isinstance(label, str):
            if not _LABEL.fullmatch(label):
                why = "1 to 40 characters, no whitespace or special characters"
                self.error(INVALID_LABEL, f"Label '{label}' is invalid: {why}", f"{loc}/Label")
            elif label in self.labels:
                self.error(DUPLICATE_LABEL, f"Duplicate Label name: {label}", f"{loc}/Label")
            self.labels.add(label)
        field = "ItemProcessor" if "ItemProcessor" in body else "Iterator"
        processor = body.get(field)
        if processor is None:
            return
        if "ItemProcessor" in body and "Iterator" in body:
            self.error(SCHEMA, "The fields 'ItemProcessor' and 'Iterator' are mutually exclusive", loc)
        self.sub_machine(
            processor, f"{loc}/{field}", PROCESSOR_FIELDS if field == "ItemProcessor" else BRANCH_FIELDS, language
        )
        config = processor.get("ProcessorConfig") if isinstance(processor, dict) else None
        if config is not None:
            cloc = f"{loc}/{field}/ProcessorConfig"
            if not isinstance(config, dict):
                self.error(SCHEMA, "The field 'ProcessorConfig' must be an object", cloc)
                return
            for key in config:
                if key not in ("Mode", "ExecutionType"):
                    self.error(SCHEMA, f'The field "{key}" is not supported by Step Functions', f"{cloc}/{key}")
            mode = config.get("Mode", "INLINE")
            if mode not in ("INLINE", "DISTRIBUTED"):
                self.error(
                    SCHEMA, "The value for the field 'Mode' must be one of: [INLINE, DISTRIBUTED]", f"{cloc}/Mode"
                )
            if mode == "DISTRIBUTED" and config.get("ExecutionType") not in ("STANDARD", "EXPRESS"):
                self.error(
                    SCHEMA,
                    "The value for the field 'ExecutionType' must be one of: [STANDARD, EXPRESS]",
                    f"{cloc}/ExecutionType",
                )
        if "ItemReader" in body and (config or {}).get("Mode", "INLINE") != "DISTRIBUTED":
            self.error(
                SCHEMA,
                "The field 'ItemReader' is only supported in a Map state in DISTRIBUTED mode",
                f"{loc}/ItemReader",
            )
        batcher = body.get("ItemBatcher")
        if isinstance(batcher, dict):
            allowed = {"MaxItemsPerBatch", "MaxInputBytesPerBatch", "BatchInput"}
            if language == JSONPATH:
                allowed |= {"MaxItemsPerBatchPath", "MaxInputBytesPerBatchPath"}
            for key in batcher:
                if key not in allowed:
                    self.error(
                        SCHEMA, f'The field "{key}" is not supported by Step Functions', f"{loc}/ItemBatcher/{key}"
                    )

    def strings(self, body: dict[str, Any], loc: str, fields: tuple[str, ...]) -> None:
        for field in fields:
            if field in body and not isinstance(body[field], str):
                self.error(SCHEMA, f"The value for the field '{field}' must be a string", f"{loc}/{field}")

    def jsonpath_fields(self, typ: str, body: dict[str, Any], loc: str) -> None:
        if typ == "Pass" and "Result" in body:
            self.static_result(body["Result"], f"{loc}/Result")
        for field in ("Error", "Cause"):
            if self.looks_dynamic(body.get(field)):
                self.warning(
                    NO_PATH, f"The value of '{field}' looks like a path; did you mean '{field}Path'?", f"{loc}/{field}"
                )
        for field in ("InputPath", "OutputPath"):
            if field in body and body[field] is not None and not self.path_ok(body[field]):
                self.error(SCHEMA, f"The value for the field '{field}' must be a valid JSONPath", f"{loc}/{field}")
        if (
            "ResultPath" in body
            and body["ResultPath"] is not None
            and not (isinstance(body["ResultPath"], str) and is_reference_path(body["ResultPath"]))
        ):
            self.error(
                SCHEMA, "The value for the field 'ResultPath' must be a valid ReferencePath", f"{loc}/ResultPath"
            )
        for field in (
            "ItemsPath",
            "SecondsPath",
            "TimestampPath",
            "TimeoutSecondsPath",
            "HeartbeatSecondsPath",
            "MaxConcurrencyPath",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentagePath",
        ):
            if field in body and not self.path_ok(body[field]):
                self.error(SCHEMA, f"The value for the field '{field}' must be a valid ReferencePath", f"{loc}/{field}")
        for field in ("ErrorPath", "CausePath"):
            if field in body and not (self.path_ok(body[field]) or self.intrinsic_ok(body[field])):
                self.error(
                    SCHEMA,
                    f"The value for the field '{field}' must be a valid JSONPath or intrinsic function",
                    f"{loc}/{field}",
                )
        for field in ("Parameters", "ResultSelector", "ItemSelector", "Assign", "Credentials"):
            if field in body:
                self.template(body[field], f"{loc}/{field}")
        if "Assign" in body:
            self.assign_names(body["Assign"], f"{loc}/Assign", strip=True)
        for a, b in (("Error", "ErrorPath"), ("Cause", "CausePath"), ("TimeoutSeconds", "TimeoutSecondsPath"),
                     ("HeartbeatSeconds", "HeartbeatSecondsPath"), ("MaxConcurrency", "MaxConcurrencyPath"),
                     ("ToleratedFailureCount", "ToleratedFailureCountPath"),
                     ("ToleratedFailurePercentage", "ToleratedFailurePercentagePath")):  # fmt: skip
            if a in body and b in body:
                self.error(SCHEMA, f"The fields '{a}' and '{b}' are mutually exclusive", loc)
        if typ == "Wait":
            given = [f for f in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if f in body]
            if len(given) != 1:
                self.error(
                    SCHEMA,
                    "Exactly one of these fields is required: [Seconds, Timestamp, SecondsPath, TimestampPath]",
                    loc,
                )
            if "Timestamp" in body and parse_timestamp(body["Timestamp"]) is None:
                self.error(
                    SCHEMA, "The value for the field 'Timestamp' must be a valid ISO-8601 timestamp", f"{loc}/Timestamp"
                )

    def jsonata_fields(self, body: dict[str, Any], loc: str) -> None:
        for key, value in body.items():
            if key in ("Retry", "Catch", "Choices", "Branches", "ItemProcessor", "Iterator", "Type", "Comment"):
                continue
            self.expressions(value, f"{loc}/{key}")
        if "Assign" in body:
            self.assign_names(body["Assign"], f"{loc}/Assign", strip=False)
        if body.get("Type") == "Wait":
            given = [f for f in ("Seconds", "Timestamp") if f in body]
            if len(given) != 1:
                self.error(SCHEMA, "Exactly one of these fields is required: [Seconds, Timestamp]", loc)

    def numbers(self, typ: str, body: dict[str, Any], loc: str) -> None:
        for field in ("TimeoutSeconds", "HeartbeatSeconds", "Seconds", "MaxConcurrency", "ToleratedFailureCount"):
            if field not in body or query.is_expression(body[field]):
                continue
            value = body[field]
            low = 0 if field in ("Seconds", "MaxConcurrency", "ToleratedFailureCount") else 1
            if not (is_int(value) and low <= value <= MAX_SECONDS):
                self.error(
                    SCHEMA,
                    f"The value for the field '{field}' must be an integer between {low} and {MAX_SECONDS}",
                    f"{loc}/{field}",
                )
        value = body.get("ToleratedFailurePercentage")
        if value is not None and not query.is_expression(value) and not (is_number(value) and 0 <= value <= 100):
            self.error(
                SCHEMA,
                "The value for the field 'ToleratedFailurePercentage' must be a number between 0 and 100",
                f"{loc}/ToleratedFailurePercentage",
            )
        t, h = body.get("TimeoutSeconds"), body.get("HeartbeatSeconds")
        if isinstance(t, int) and isinstance(h, int) and h >= t:
            self.error(
                SCHEMA,
                "The value for the field 'HeartbeatSeconds' must be smaller than 'TimeoutSeconds'",
                f"{loc}/HeartbeatSeconds",
            )
