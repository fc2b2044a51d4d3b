"""The States Language field table: the fields a state of each type and query language may and must have.

Validation checks a definition against this table (JSON in, diagnostics out) rather than a text grammar, so any
arrangement of valid fields AWS accepts is accepted.
"""

from __future__ import annotations

from workflows.language.model import JSONATA, JSONPATH

SCHEMA = "SCHEMA_VALIDATION_FAILED"
INVALID_JSON = "INVALID_JSON_DESCRIPTION"
MISSING_TARGET = "MISSING_TRANSITION_TARGET"
DUPLICATE = "DUPLICATE_STATE_NAME"
DUPLICATE_LABEL = "DUPLICATE_LABEL_NAME"
INVALID_LABEL = "INVALID_LABEL_NAME"
MISSING_END = "MISSING_END_STATE"
INVALID_RESOURCE = "INVALID_RESOURCE"
INVALID_NAME = "INVALID_STATE_NAME"
MISSING_DESCRIPTION = "MISSING_DESCRIPTION"
NO_DOLLAR = "NO_DOLLAR"
NO_PATH = "NO_PATH"
PASS_RESULT_IS_STATIC = "PASS_RESULT_IS_STATIC"

MAX_NAME = 80
MAX_SECONDS = 99999999

COMMON = {"Type", "Comment", "QueryLanguage"}
_FLOW = {"Next", "End"}
_RETRY = {"Retry", "Catch"}
_JSONPATH_IO = {"InputPath", "OutputPath"}
_JSONATA_IO = {"Output", "Assign"}
_MAP_COMMON = {
    "ItemProcessor",
    "Iterator",
    "ItemReader",
    "ResultWriter",
    "ItemBatcher",
    "MaxConcurrency",
    "ToleratedFailureCount",
    "ToleratedFailurePercentage",
    "Label",
    "ItemSelector",
}

# (type, query language) -> the fields a state may have, beyond COMMON.
FIELDS: dict[tuple[str, str], set[str]] = {
    ("Pass", JSONPATH): _FLOW | _JSONPATH_IO | {"Parameters", "Result", "ResultPath", "Assign"},
    ("Pass", JSONATA): _FLOW | _JSONATA_IO,
    ("Task", JSONPATH): _FLOW
    | _RETRY
    | _JSONPATH_IO
    | {
        "Resource",
        "Parameters",
        "ResultSelector",
        "ResultPath",
        "TimeoutSeconds",
        "TimeoutSecondsPath",
        "HeartbeatSeconds",
        "HeartbeatSecondsPath",
        "Credentials",
        "Assign",
    },
    ("Task", JSONATA): _FLOW
    | _RETRY
    | _JSONATA_IO
    | {"Resource", "Arguments", "TimeoutSeconds", "HeartbeatSeconds", "Credentials"},
    ("Choice", JSONPATH): _JSONPATH_IO | {"Choices", "Default", "Assign"},
    ("Choice", JSONATA): _JSONATA_IO | {"Choices", "Default"},
    ("Wait", JSONPATH): _FLOW | _JSONPATH_IO | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath", "Assign"},
    ("Wait", JSONATA): _FLOW | _JSONATA_IO | {"Seconds", "Timestamp"},
    ("Succeed", JSONPATH): _JSONPATH_IO,
    ("Succeed", JSONATA): {"Output"},
    ("Fail", JSONPATH): {"Error", "ErrorPath", "Cause", "CausePath"},
    ("Fail", JSONATA): {"Error", "Cause"},
    ("Parallel", JSONPATH): _FLOW
    | _RETRY
    | _JSONPATH_IO
    | {"Branches", "Parameters", "ResultSelector", "ResultPath", "Assign"},
    ("Parallel", JSONATA): _FLOW | _RETRY | _JSONATA_IO | {"Branches", "Arguments"},
    ("Map", JSONPATH): _FLOW
    | _RETRY
    | _JSONPATH_IO
    | _MAP_COMMON
    | {
        "ItemsPath",
        "Parameters",
        "ResultSelector",
        "ResultPath",
        "MaxConcurrencyPath",
        "ToleratedFailureCountPath",
        "ToleratedFailurePercentagePath",
        "Assign",
    },
    ("Map", JSONATA): _FLOW | _RETRY | _JSONATA_IO | _MAP_COMMON | {"Items"},
}
REQUIRED: dict[str, set[str]] = {"Task": {"Resource"}, "Choice": {"Choices"}, "Parallel": {"Branches"}}
STATE_TYPES = sorted({t for t, _ in FIELDS})
MACHINE_FIELDS = {"Comment", "StartAt", "States", "Version", "TimeoutSeconds", "QueryLanguage"}
BRANCH_FIELDS = {"Comment", "StartAt", "States", "QueryLanguage"}
PROCESSOR_FIELDS = {"Comment", "StartAt", "States", "ProcessorConfig", "QueryLanguage"}
