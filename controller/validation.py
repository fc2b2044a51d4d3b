"""Validation and defaults of function configurations, with AWS Lambda's bounds and messages."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from kambda.aws import errors
from kambda.names import LATEST, Arns, check_alias_name, check_function_version, destination_arn_error, parse_function
from kambda.v1.function_pb2 import Alias, EventInvokeConfig, FunctionConfig

PYTHON_RUNTIMES = ("python3.11", "python3.12", "python3.13")
NODE_RUNTIMES = ("nodejs18.x", "nodejs20.x", "nodejs22.x")
CUSTOM_RUNTIMES = ("provided", "provided.al2", "provided.al2023")
RUNTIMES = PYTHON_RUNTIMES + NODE_RUNTIMES + CUSTOM_RUNTIMES
#: Every runtime name AWS lists; the enum in the error message quotes them as AWS does.
AWS_RUNTIME_ENUM = (
    "nodejs", "nodejs4.3", "nodejs6.10", "nodejs8.10", "nodejs10.x", "nodejs12.x", "nodejs14.x",
    "nodejs16.x", "java8", "java8.al2", "java11", "python2.7", "python3.6", "python3.7", "python3.8",
    "python3.9", "dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "dotnet6",
    "dotnet8", "nodejs4.3-edge", "go1.x", "ruby2.5", "ruby2.7", "provided", "provided.al2",
    "nodejs18.x", "python3.10", "java17", "ruby3.2", "ruby3.3", "python3.11", "nodejs20.x",
    "provided.al2023", "python3.12", "java21", "python3.13", "nodejs22.x",
)
RESERVED_ENV_KEYS = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})
_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_ENV_KEY_RE = re.compile(r"[a-zA-Z]([a-zA-Z0-9_])+")
ENV_LIMIT = 4096


def apply_defaults(config: FunctionConfig, region_default_role: str) -> None:
    if not config.timeout:
        config.timeout = 3
    if not config.memory_size:
        config.memory_size = 128
    if not config.package_type:
        config.package_type = "Zip"
    if not config.architectures:
        config.architectures.append("x86_64")
    if not config.ephemeral_storage:
        config.ephemeral_storage = 512
    if not config.tracing_mode:
        config.tracing_mode = "PassThrough"
    if not config.log_format:
        config.log_format = "Text"
    if not config.log_group:
        config.log_group = f"/aws/lambda/{config.name}"
    if not config.role:
        config.role = region_default_role


def validate(config: FunctionConfig) -> None:
    """Raise the AWS-shaped error for the first thing wrong with ``config`` (after defaults)."""
    if not _NAME_RE.fullmatch(config.name):
        raise errors.InvalidParameterValue(f"Invalid function name: {config.name!r}")
    if config.package_type != "Zip":
        raise errors.InvalidParameterValue(
            f"Unsupported PackageType {config.package_type!r}: kambda runs Zip packages")
    if config.runtime not in RUNTIMES:
        raise errors.InvalidParameterValue(
            f"Value {config.runtime or 'null'} at 'runtime' failed to satisfy constraint: Member must "
            f"satisfy enum value set: [{', '.join(AWS_RUNTIME_ENUM)}] or be a valid ARN"
            + _unsupported_hint(config.runtime)
        )
    if not config.handler and not config.runtime.startswith("provided"):
        raise errors.InvalidParameterValue("The Handler parameter is required for Zip package type.")
    if len(config.handler) > 128 or re.search(r"\s", config.handler):  # may be empty for provided.*
        raise errors.InvalidParameterValue(
            f"1 validation error detected: Value '{config.handler}' at 'handler' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [^\\s]+")
    if not 1 <= config.timeout <= 900:
        raise errors.InvalidParameterValue(
            f"1 validation error detected: Value '{config.timeout}' at 'timeout' failed to satisfy "
            "constraint: Member must have value between 1 and 900")
    if not 128 <= config.memory_size <= 10240:
        raise errors.InvalidParameterValue(
            f"1 validation error detected: Value '{config.memory_size}' at 'memorySize' failed to "
            "satisfy constraint: Member must have value between 128 and 10240")
    if not 512 <= config.ephemeral_storage <= 10240:
        raise errors.InvalidParameterValue(
            f"1 validation error detected: Value '{config.ephemeral_storage}' at "
            "'ephemeralStorage.size' failed to satisfy constraint: Member must have value between "
            "512 and 10240")
    if len(config.description) > 256:
        raise errors.InvalidParameterValue(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: "
            "Member must have length less than or equal to 256")
    for arch in config.architectures:
        if arch not in ("x86_64", "arm64"):
            raise errors.InvalidParameterValue(
                f"1 validation error detected: Value '[{arch}]' at 'architectures' failed to satisfy "
                "constraint: Member must satisfy enum value set: [x86_64, arm64]")
    if config.snap_start not in ("", "None", "PublishedVersions"):
        raise errors.InvalidParameterValue(
            f"1 validation error detected: Value '{config.snap_start}' at 'snapStart.applyOn' failed to "
            "satisfy constraint: Member must satisfy enum value set: [PublishedVersions, None]")
    if config.snap_start == "PublishedVersions" and config.runtime not in PYTHON_RUNTIMES:
        raise errors.InvalidParameterValue(f"SnapStart is not supported for runtime {config.runtime}")
    _validate_environment(dict(config.environment))


def _unsupported_hint(runtime: str) -> str:
    if runtime in AWS_RUNTIME_ENUM:
        return f". kambda does not run {runtime} yet; supported: {', '.join(RUNTIMES)}"
    return ""


def _validate_environment(env: dict[str, str]) -> None:
    for key in env:
        if not _ENV_KEY_RE.fullmatch(key):
            raise errors.InvalidParameterValue(
                f"1 validation error detected: Value at 'environment.variables' failed to satisfy "
                f"constraint: Map keys must satisfy constraint: [Member must satisfy regular "
                f"expression pattern: [a-zA-Z]([a-zA-Z0-9_])+] (key {key!r})")
    reserved = sorted(set(env) & RESERVED_ENV_KEYS)
    if reserved:
        raise errors.InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided contains reserved keys that are currently not supported "
            f"for modification. Reserved keys used in this request: {', '.join(reserved)}")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in env.items())
    if size > ENV_LIMIT:
        raise errors.InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment "
            f"variables you have provided exceeded the 4KB limit. String measured: {size} bytes")


def validate_event_invoke_config(eic: EventInvokeConfig, functions: object) -> None:
    """MaximumRetryAttempts 0..2, MaximumEventAgeInSeconds 60..21600, destinations that exist."""
    if eic.HasField("maximum_retry_attempts") and not 0 <= eic.maximum_retry_attempts <= 2:
        raise errors.InvalidParameterValue(
            f"1 validation error detected: Value '{eic.maximum_retry_attempts}' at 'maximumRetryAttempts' failed "
            "to satisfy constraint: Member must have value less than or equal to 2")
    if eic.HasField("maximum_event_age") and not 60 <= eic.maximum_event_age <= 21600:
        raise errors.InvalidParameterValue(
            f"1 validation error detected: Value '{eic.maximum_event_age}' at 'maximumEventAgeInSeconds' failed "
            "to satisfy constraint: Member must have value between 60 and 21600")
    for arn in (eic.on_success, eic.on_failure):
        validate_destination(arn, functions)


def validate_destination(arn: str, functions: object) -> None:
    if not arn:
        return
    problem = destination_arn_error(arn)
    if problem:
        raise errors.InvalidParameterValue(problem)
    if arn.startswith("arn:aws:lambda:") and parse_function(arn).name not in functions:  # type: ignore[operator]
        raise errors.InvalidParameterValue(f"The destination function {arn} does not exist")


def validate_alias(alias: Alias, has_version: Callable[[str], bool], arns: Arns) -> None:
    """An alias's name, description, version and routing, with AWS's rules: the versions exist, at
    most one additional version, weighted in [0, 1), never $LATEST and never the primary itself."""
    check_alias_name(alias.name)
    check_function_version(alias.function_version)
    if len(alias.description) > 256:
        raise errors.InvalidParameterValue(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: "
            "Member must have length less than or equal to 256")
    if not has_version(alias.function_version):
        raise errors.function_not_found(arns.function(alias.function, alias.function_version))
    weights = alias.additional_version_weights
    if not weights:
        return
    if len(weights) > 1:
        raise errors.InvalidParameterValue(
            "Number of items in AdditionalVersionWeights cannot be greater than 1")
    if alias.function_version == LATEST:
        raise errors.InvalidParameterValue("$LATEST is not supported for an alias pointing to more than 1 version")
    for version, weight in weights.items():
        if version == LATEST:
            raise errors.InvalidParameterValue(
                "$LATEST is not supported for an alias pointing to more than 1 version")
        check_function_version(version, "additionalVersionWeights")
        if version == alias.function_version:
            raise errors.InvalidParameterValue(
                f"Invalid function version {version}. The version in AdditionalVersionWeights must differ "
                "from the alias's FunctionVersion")
        if not (0.0 <= weight < 1.0) or math.isnan(weight):
            raise errors.InvalidParameterValue(
                f"Invalid weight {weight} for version {version}: a weight must be at least 0.0 and below 1.0")
        if not has_version(version):
            raise errors.function_not_found(arns.function(alias.function, version))
