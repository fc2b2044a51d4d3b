"""Checks shared by the validator: diagnostics, transition targets, paths, templates, intrinsic calls and JSONata
expressions, Assign names, and the rules of Choice, Retry and Catch."""

from __future__ import annotations

from typing import Any

from workflows.language import intrinsics, query
from workflows.language.choice import COMPARISON_OPERATORS, TYPE_TESTS, parse_timestamp
from workflows.language.errors import ALL, Diagnostic
from workflows.language.fields import MAX_SECONDS, MISSING_TARGET, NO_DOLLAR, NO_PATH, PASS_RESULT_IS_STATIC, SCHEMA
from workflows.language.model import JSONATA, JSONPATH
from workflows.language.paths import is_reference_path, is_valid_path


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Checks:
    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, code: str, message: str, location: str) -> None:
        self.diagnostics.append(Diagnostic("ERROR", code, message, location))

    def warning(self, code: str, message: str, location: str) -> None:
        self.diagnostics.append(Diagnostic("WARNING", code, message, location))

    def looks_dynamic(self, value: Any) -> bool:
        """A string that reads as a Path or an intrinsic call (AWS's NO_DOLLAR / NO_PATH warnings)."""
        return isinstance(value, str) and (
            value == "$" or value.startswith(("$.", "$$.", "$[")) or (self.intrinsic_ok(value))
        )

    def target(self, value: Any, field: str, loc: str, scope: dict[str, Any]) -> None:
        if not isinstance(value, str):
            self.error(SCHEMA, f"The value for the field '{field}' must be a string", loc)
        elif value not in scope:
            self.error(MISSING_TARGET, f"Missing '{field}' target: {value}", loc)

    def expressions(self, value: Any, loc: str) -> None:
        if isinstance(value, str) and query.is_expression(value):
            try:
                query.compile_expression(value)
            except query.QuerySyntaxError as e:
                self.error(SCHEMA, f"The JSONata expression is invalid: {e}", loc)
                return
            if query.reads_the_root(value):
                self.error(
                    SCHEMA,
                    f"The JSONata expression '{query.body(value)}' cannot use $, $$ or an unqualified field name at "
                    "the top level; use $states.input",
                    loc,
                )
        elif isinstance(value, dict):
            for k, v in value.items():
                self.expressions(v, f"{loc}/{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.expressions(v, f"{loc}/{i}")

    def assign_names(self, assign: Any, loc: str, strip: bool) -> None:
        if not isinstance(assign, dict):
            self.error(SCHEMA, "The value for the field 'Assign' must be an object", loc)
            return
        for key in assign:
            name = key[:-2] if strip and key.endswith(".$") else key
            if not name or not (name[0].isalpha() or name[0] == "_") or not all(c.isalnum() or c == "_" for c in name):
                self.error(SCHEMA, f"The variable name '{name}' is invalid", f"{loc}/{key}")
            elif name == "states":
                self.error(SCHEMA, "The variable name 'states' is reserved", f"{loc}/{key}")

    def path_ok(self, value: Any) -> bool:
        return isinstance(value, str) and is_valid_path(value)

    def intrinsic_ok(self, value: Any) -> bool:
        if not isinstance(value, str) or not intrinsics.is_intrinsic(value):
            return False
        try:
            intrinsics.parse_call(value)
        except intrinsics.IntrinsicSyntaxError:
            return False
        return True

    def template(self, value: Any, loc: str) -> None:
        if isinstance(value, dict):
            for key, v in value.items():
                if key.endswith(".$"):
                    if not (self.path_ok(v) or self.intrinsic_ok(v)):
                        self.error(
                            SCHEMA,
                            f"The value for the field '{key}' must be a valid JSONPath or intrinsic function call",
                            f"{loc}/{key}",
                        )
                else:
                    if self.looks_dynamic(v):
                        self.warning(
                            NO_DOLLAR,
                            f"The field '{key}' looks like a JSONPath or intrinsic function; to use it as one, "
                            f"name the field '{key}.$'",
                            f"{loc}/{key}",
                        )
                    self.template(v, f"{loc}/{key}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.template(v, f"{loc}/{i}")

    def static_result(self, value: Any, loc: str) -> None:
        if isinstance(value, dict):
            for key, v in value.items():
                if key.endswith(".$"):
                    self.warning(
                        PASS_RESULT_IS_STATIC,
                        f"The field '{key}' of a Pass state's Result is not evaluated; use Parameters for paths",
                        f"{loc}/{key}",
                    )
                self.static_result(v, f"{loc}/{key}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.static_result(v, f"{loc}/{i}")

    def error_equals(self, item: dict[str, Any], loc: str, last: bool) -> None:
        errors = item.get("ErrorEquals")
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
            self.error(SCHEMA, "The field 'ErrorEquals' must be a non-empty array of strings", f"{loc}/ErrorEquals")
            return
        if ALL in errors and len(errors) > 1:
            self.error(SCHEMA, f"{ALL} must appear alone in 'ErrorEquals'", f"{loc}/ErrorEquals")
        if ALL in errors and not last:
            self.error(SCHEMA, f"{ALL} must appear in the last element of the array", f"{loc}/ErrorEquals")

    def retry_catch(self, field: str, value: Any, loc: str, language: str, scope: dict[str, Any]) -> None:
        if not isinstance(value, list):
            self.error(SCHEMA, f"The value for the field '{field}' must be an array", loc)
            return
        if field == "Retry":
            allowed = {
                "ErrorEquals",
                "IntervalSeconds",
                "MaxAttempts",
                "BackoffRate",
                "MaxDelaySeconds",
                "JitterStrategy",
                "Comment",
            }
        else:
            allowed = {"ErrorEquals", "Next", "Comment", "Assign"} | (
                {"ResultPath"} if language == JSONPATH else {"Output"}
            )
        for i, item in enumerate(value):
            iloc = f"{loc}/{i}"
            if not isinstance(item, dict):
                self.error(SCHEMA, f"An element of '{field}' must be an object", iloc)
                continue
            for key in item:
                if key not in allowed:
                    self.error(SCHEMA, f'The field "{key}" is not supported by Step Functions', f"{iloc}/{key}")
            self.error_equals(item, iloc, i == len(value) - 1)
            if field == "Retry":
                self.retrier(item, iloc)
            else:
                if "Next" not in item:
                    self.error(SCHEMA, "These fields are required: [Next]", iloc)
                else:
                    self.target(item["Next"], "Next", f"{iloc}/Next", scope)
                rp = item.get("ResultPath", "$")
                if rp is not None and not (isinstance(rp, str) and is_reference_path(rp)):
                    self.error(
                        SCHEMA,
                        "The value for the field 'ResultPath' must be a valid ReferencePath",
                        f"{iloc}/ResultPath",
                    )
                if "Assign" in item:
                    if language == JSONPATH:
                        self.template(item["Assign"], f"{iloc}/Assign")
                    self.assign_names(item["Assign"], f"{iloc}/Assign", strip=language == JSONPATH)
                if language == JSONATA:
                    self.expressions({k: item[k] for k in ("Output", "Assign") if k in item}, iloc)

    def retrier(self, item: dict[str, Any], loc: str) -> None:
        checks = (
            ("IntervalSeconds", lambda v: is_int(v) and 1 <= v <= MAX_SECONDS, "a positive integer"),
            ("MaxAttempts", lambda v: is_int(v) and 0 <= v <= MAX_SECONDS, "a non-negative integer"),
            ("BackoffRate", lambda v: is_number(v) and v >= 1.0, "a number greater than or equal to 1.0"),
            ("MaxDelaySeconds", lambda v: is_int(v) and 1 <= v <= MAX_SECONDS, "a positive integer"),
            ("JitterStrategy", lambda v: v in ("FULL", "NONE"), "one of: [FULL, NONE]"),
        )
        for field, ok, what in checks:
            if field in item and not ok(item[field]):
                self.error(SCHEMA, f"The value for the field '{field}' must be {what}", f"{loc}/{field}")

    def choices(self, value: Any, loc: str, language: str, scope: dict[str, Any]) -> None:
        if not isinstance(value, list) or not value:
            self.error(SCHEMA, "The field 'Choices' must be a non-empty array", loc)
            return
        for i, rule in enumerate(value):
            rloc = f"{loc}/{i}"
            if not isinstance(rule, dict):
                self.error(SCHEMA, "A Choice rule must be an object", rloc)
                continue
            if "Next" not in rule:
                self.error(SCHEMA, "These fields are required: [Next]", rloc)
            else:
                self.target(rule["Next"], "Next", f"{rloc}/Next", scope)
            if language == JSONATA:
                for key in rule:
                    if key not in ("Condition", "Next", "Comment", "Assign", "Output"):
                        self.error(SCHEMA, f'The field "{key}" is not supported by Step Functions', f"{rloc}/{key}")
                if "Condition" not in rule:
                    self.error(SCHEMA, "These fields are required: [Condition]", rloc)
                elif not (isinstance(rule["Condition"], bool) or query.is_expression(rule["Condition"])):
                    self.error(
                        SCHEMA, "The value for the field 'Condition' must be a JSONata expression", f"{rloc}/Condition"
                    )
                self.expressions({k: rule[k] for k in ("Condition", "Assign", "Output") if k in rule}, rloc)
                if "Assign" in rule:
                    self.assign_names(rule["Assign"], f"{rloc}/Assign", strip=False)
            else:
                self.rule(rule, rloc, top=True)

    def rule(self, rule: Any, loc: str, top: bool) -> None:
        if not isinstance(rule, dict):
            self.error(SCHEMA, "A Choice rule must be an object", loc)
            return
        extra = {"Next", "Assign", "Comment"} if top else {"Comment"}
        if "Assign" in rule and top:
            self.template(rule["Assign"], f"{loc}/Assign")
            self.assign_names(rule["Assign"], f"{loc}/Assign", strip=True)
        combinators = [k for k in ("And", "Or", "Not") if k in rule]
        operators = [k for k in rule if k in COMPARISON_OPERATORS]
        for key in rule:
            if key not in extra and key not in ("And", "Or", "Not", "Variable") and key not in COMPARISON_OPERATORS:
                self.error(SCHEMA, f'The field "{key}" is not supported by Step Functions', f"{loc}/{key}")
        if len(combinators) + len(operators) != 1:
            self.error(SCHEMA, "A Choice rule must have exactly one comparison operator or And, Or, Not", loc)
            return
        if combinators:
            kind = combinators[0]
            if "Variable" in rule:
                self.error(
                    SCHEMA, f'The field "Variable" is not supported by Step Functions with {kind}', f"{loc}/Variable"
                )
            if kind == "Not":
                self.rule(rule["Not"], f"{loc}/Not", top=False)
            elif not isinstance(rule[kind], list) or not rule[kind]:
                self.error(SCHEMA, f"The field '{kind}' must be a non-empty array", f"{loc}/{kind}")
            else:
                for i, sub in enumerate(rule[kind]):
                    self.rule(sub, f"{loc}/{kind}/{i}", top=False)
            return
        if "Variable" not in rule:
            self.error(SCHEMA, "These fields are required: [Variable]", loc)
        elif not self.path_ok(rule["Variable"]):
            self.error(SCHEMA, "The value for the field 'Variable' must be a valid JSONPath", f"{loc}/Variable")
        op = operators[0]
        value = rule[op]
        if op.endswith("Path"):
            ok = self.path_ok(value)
        elif op in TYPE_TESTS:
            ok = isinstance(value, bool)
        elif op.startswith("String"):
            ok = isinstance(value, str)
        elif op.startswith("Numeric"):
            ok = is_number(value)
        elif op.startswith("Boolean"):
            ok = isinstance(value, bool)
        else:
            ok = parse_timestamp(value) is not None
        if not ok:
            self.error(SCHEMA, f"The value for the field '{op}' has the wrong type", f"{loc}/{op}")
        elif op.startswith(("String", "Timestamp")) and not op.endswith("Path") and self.looks_dynamic(value):
            self.warning(NO_PATH, f"The value of '{op}' looks like a path; did you mean '{op}Path'?", f"{loc}/{op}")
