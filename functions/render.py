"""AWS Lambda's JSON shapes <-> kambda's FunctionConfig.

Parsing checks the types of what arrives (a wrong type is the AWS-shaped 400, never a 500);
the controller checks values and bounds.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from kambda.aws import errors
from kambda.names import Arns
from kambda.v1.function_pb2 import EventInvokeConfig, FunctionConfig


def code_sha256_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode() if hex_digest else ""


def configuration(config: FunctionConfig, arns: Arns, qualified: bool = False,
                  qualifier: str | None = None) -> dict[str, Any]:
    """FunctionConfiguration as AWS returns it. The ARN is qualified by ``qualifier`` (what the
    caller named: an alias, a version), or with ``qualified`` by the configuration's own version."""
    body: dict[str, Any] = {
        "FunctionName": config.name,
        "FunctionArn": arns.function(config.name, qualifier or (config.version if qualified else None)),
        "Runtime": config.runtime,
        "Role": config.role,
        "Handler": config.handler,
        "CodeSize": config.code_size,
        "Description": config.description,
        "Timeout": config.timeout,
        "MemorySize": config.memory_size,
        "LastModified": config.last_modified,
        "CodeSha256": code_sha256_b64(config.code_sha256),
        "Version": config.version,
        "Environment": {"Variables": dict(config.environment)},
        "TracingConfig": {"Mode": config.tracing_mode},
        "RevisionId": config.revision_id,
        "Layers": [{"Arn": arn, "CodeSize": 0} for arn in config.layers],
        "State": config.state,
        "LastUpdateStatus": config.last_update_status,
        "PackageType": config.package_type,
        "Architectures": list(config.architectures),
        "EphemeralStorage": {"Size": config.ephemeral_storage},
        "SnapStart": {"ApplyOn": config.snap_start or "None",
                      "OptimizationStatus": "On" if config.snap_start == "PublishedVersions" else "Off"},
        "LoggingConfig": {"LogFormat": config.log_format, "LogGroup": config.log_group},
    }
    if config.dead_letter_target:
        body["DeadLetterConfig"] = {"TargetArn": config.dead_letter_target}
    if config.state_reason:
        body["StateReason"] = config.state_reason
        body["StateReasonCode"] = config.state_reason_code
    return body


#: What an integer field may hold: the registry stores them as protobuf int32.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def expect(body: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise errors.InvalidParameterValue(f"{key} must be {what}")
    if isinstance(value, int) and not isinstance(value, bool) and not INT32_MIN <= value <= INT32_MAX:
        raise errors.InvalidParameterValue(f"{key} is out of range: {value}")
    return value


def _environment(body: dict[str, Any]) -> dict[str, str] | None:
    env = expect(body, "Environment", dict, "an object")
    if env is None:
        return None
    variables = env.get("Variables") or {}
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise errors.InvalidParameterValue("Environment.Variables must map strings to strings")
    return variables


def decode_zip(value: Any) -> bytes:
    """A zip from a request: bytes once the protocol layer decoded the blob, or a base64 string."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise errors.InvalidParameterValue("Code.ZipFile must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidParameterValue(
            "Could not unzip uploaded file. Please check your file, then try to upload again.") from None


#: AWS request field -> (FunctionConfig field, type, type description) for the simple scalars.
_SCALARS = {
    "Runtime": ("runtime", str, "a string"),
    "Role": ("role", str, "a string"),
    "Handler": ("handler", str, "a string"),
    "Description": ("description", str, "a string"),
    "Timeout": ("timeout", int, "an integer"),
    "MemorySize": ("memory_size", int, "an integer"),
    "PackageType": ("package_type", str, "a string"),
}


#: The model's minimum of the integer fields whose zero would otherwise read as "not given".
_MINIMUM = {"Timeout": 1, "MemorySize": 128}


def parse_config(body: dict[str, Any], name: str) -> tuple[FunctionConfig, list[str]]:
    """A FunctionConfig from a CreateFunction / UpdateFunctionConfiguration body, and the
    names of the fields the body set (the update mask)."""
    config = FunctionConfig(name=name)
    mask: list[str] = []
    for aws_key, (field, kind, what) in _SCALARS.items():
        value = expect(body, aws_key, kind, what)
        if value is not None:
            least = _MINIMUM.get(aws_key)
            if least is not None and value < least:
                # Given, but below the model's minimum: refused, never mistaken for "absent" (which
                # takes the default) as a zero would be in the protobuf.
                member = aws_key[:1].lower() + aws_key[1:]
                raise errors.Validation(
                    f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: "
                    f"Member must have value greater than or equal to {least}")
            setattr(config, field, value)
            mask.append(field)
    env = _environment(body)
    if env is not None:
        config.environment.update(env)
        mask.append("environment")
    arch = expect(body, "Architectures", list, "a list")
    if arch is not None:
        if len(arch) != 1 or not isinstance(arch[0], str):
            raise errors.InvalidParameterValue("Architectures must list exactly one architecture")
        config.architectures.extend(arch)
    storage = expect(body, "EphemeralStorage", dict, "an object")
    if storage is not None:
        size = expect(storage, "Size", int, "an integer")
        if size is None:
            raise errors.InvalidParameterValue("EphemeralStorage.Size must be an integer")
        config.ephemeral_storage = size
        mask.append("ephemeral_storage")
    tracing = expect(body, "TracingConfig", dict, "an object")
    if tracing is not None and isinstance(tracing.get("Mode"), str):
        config.tracing_mode = tracing["Mode"]
        mask.append("tracing_mode")
    layers = expect(body, "Layers", list, "a list")
    if layers is not None:
        if not all(isinstance(arn, str) for arn in layers):
            raise errors.InvalidParameterValue("Layers must be a list of ARNs")
        config.layers.extend(layers)
        mask.append("layers")
    logging_config = expect(body, "LoggingConfig", dict, "an object")
    if logging_config is not None:
        if isinstance(logging_config.get("LogFormat"), str):
            config.log_format = logging_config["LogFormat"]
            mask.append("log_format")
        if isinstance(logging_config.get("LogGroup"), str):
            config.log_group = logging_config["LogGroup"]
            mask.append("log_group")
    snap = expect(body, "SnapStart", dict, "an object")
    if snap is not None:
        if not isinstance(snap.get("ApplyOn"), str):
            raise errors.InvalidParameterValue("SnapStart.ApplyOn must be PublishedVersions or None")
        config.snap_start = snap["ApplyOn"]
        mask.append("snap_start")
    dlq = expect(body, "DeadLetterConfig", dict, "an object")
    if dlq is not None:
        target = dlq.get("TargetArn", "")
        if not isinstance(target, str):
            raise errors.InvalidParameterValue("DeadLetterConfig.TargetArn must be a string")
        config.dead_letter_target = target
        mask.append("dead_letter_target")
    tags = expect(body, "Tags", dict, "an object")
    if tags is not None:
        config.tags.update(check_tags(tags))
    return config, mask


def check_tags(tags: dict[str, Any]) -> dict[str, str]:
    """Tags as Lambda accepts them: keys of 1-128 characters not starting with ``aws:``, values up to 256."""
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or not isinstance(value, str) or len(value) > 256:
            raise errors.InvalidParameterValue(f"Invalid tag: {str(key)[:128]!r}: keys have 1 to 128 characters "
                                               "and values at most 256")
        if key.lower().startswith("aws:"):
            raise errors.InvalidParameterValue(f"Tag keys starting with 'aws:' are reserved: {key}")
    return {str(k): str(v) for k, v in tags.items()}


def event_invoke_config(config: FunctionConfig, arns: Arns) -> dict[str, Any]:
    """FunctionEventInvokeConfig as AWS returns it."""
    eic = config.event_invoke_config
    body: dict[str, Any] = {"FunctionArn": arns.function(config.name, config.version),
                            "LastModified": _epoch_seconds(eic.last_modified),
                            "DestinationConfig": {"OnSuccess": {}, "OnFailure": {}}}
    if eic.HasField("maximum_retry_attempts"):
        body["MaximumRetryAttempts"] = eic.maximum_retry_attempts
    if eic.HasField("maximum_event_age"):
        body["MaximumEventAgeInSeconds"] = eic.maximum_event_age
    if eic.on_success:
        body["DestinationConfig"]["OnSuccess"] = {"Destination": eic.on_success}
    if eic.on_failure:
        body["DestinationConfig"]["OnFailure"] = {"Destination": eic.on_failure}
    return body


def parse_event_invoke_config(body: dict[str, Any]) -> tuple[EventInvokeConfig, list[str]]:
    """An EventInvokeConfig from a Put/Update body, and the fields the body set."""
    eic = EventInvokeConfig()
    fields: list[str] = []
    retries = expect(body, "MaximumRetryAttempts", int, "an integer")
    if retries is not None:
        eic.maximum_retry_attempts = retries
        fields.append("maximum_retry_attempts")
    age = expect(body, "MaximumEventAgeInSeconds", int, "an integer")
    if age is not None:
        eic.maximum_event_age = age
        fields.append("maximum_event_age")
    destinations = expect(body, "DestinationConfig", dict, "an object")
    if destinations is not None:
        for key, field in (("OnSuccess", "on_success"), ("OnFailure", "on_failure")):
            value = destinations.get(key)
            if value is None:
                continue
            target = value.get("Destination", "") if isinstance(value, dict) else None
            if not isinstance(target, str):
                raise errors.InvalidParameterValue(f"DestinationConfig.{key}.Destination must be a string")
            setattr(eic, field, target)
            fields.append(field)
    return eic, fields


def _epoch_seconds(timestamp: str) -> float:
    """AWS's REST JSON protocol sends a Timestamp (EventInvokeConfig's LastModified) as epoch seconds;
    kambda stores it as FunctionConfiguration's LastModified string."""
    if not timestamp:
        return 0.0
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def max_items(value: int | None, default: int, most: int = 10_000) -> int:
    """A MaxItems parameter (parsed by the protocol layer): from 1 to ``most`` (AWS's ValidationException
    otherwise), ``default`` when the request has none."""
    if value is None:
        return default
    if not 1 <= value <= most:
        raise errors.Validation(f"1 validation error detected: Value '{value}' at 'maxItems' failed to "
                                f"satisfy constraint: Member must have value between 1 and {most}")
    return value
