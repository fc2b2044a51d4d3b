"""AWS SDK service integrations: ``arn:aws:states:::aws-sdk:<service>:<action>`` and the optimized ``dynamodb:*``.

A task calls the service through kambda's own front door, as a function's boto3 would: the request is built by
botocore's serializer for the operation's protocol, signed with SigV4 by credentials of the state machine's
execution role (minted with the platform's role key, kambda/aws/roles.py, so IAM judges the call by that role's
policies, as on AWS), sent over HTTP to ``KAMBDA_ENDPOINT_URL``, and the answer parsed by botocore's parser. The
task's result is the operation's output with its members as the API names them (``Item``, ``Count`` ...),
timestamps as ISO 8601 text and blobs as text where they decode, else base64.

A service's error becomes the task's error ``<Service>.<Code>``, both in PascalCase and the code always ending in
``Exception`` (AWS adds the suffix where the service has none: ``S3.NoSuchKeyException``):
``DynamoDb.ConditionalCheckFailedException`` for ``aws-sdk:dynamodb:putItem``,
``DynamoDB.ConditionalCheckFailedException`` for the optimized ``dynamodb:putItem``. Like an HTTP task, a call
whose answer was lost to a crash before the history recorded it is made again when the execution resumes (at
least once).
"""

from __future__ import annotations

import base64
import datetime
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import botocore.session  # type: ignore[import-untyped]
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest, prepare_request_dict  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.exceptions import ParamValidationError  # type: ignore[import-untyped]
from botocore.parsers import create_parser  # type: ignore[import-untyped]
from botocore.serialize import create_serializer  # type: ignore[import-untyped]
from botocore.validate import validate_parameters  # type: ignore[import-untyped]

from kambda.aws import roles
from workflows.language import StatesError

#: The SDK's service names (what ``aws-sdk:<service>`` says) that botocore names otherwise.
BOTOCORE_NAME = {"sfn": "stepfunctions", "eventbridge": "events", "cloudwatchevents": "events"}
#: How the error names of each service begin (``<Prefix>.<Code>``), as AWS spells them for aws-sdk tasks.
ERROR_PREFIX = {"dynamodb": "DynamoDb", "s3": "S3", "sfn": "Sfn", "lambda": "Lambda", "eventbridge": "EventBridge",
                "sqs": "Sqs", "sns": "Sns", "ecs": "Ecs", "iam": "Iam", "sts": "Sts", "ecr": "Ecr",
                "dynamodbstreams": "DynamoDbStreams", "apigatewayv2": "ApiGatewayV2"}
TIMEOUT_S = 60.0
_session: Any = None


def _models() -> Any:
    global _session
    if _session is None:
        _session = botocore.session.get_session()
    return _session


def operation_name(action: str) -> str:
    """``getItem`` -> ``GetItem``: the SDK's camelCase action as the API's operation."""
    return action[:1].upper() + action[1:]


def error_name(prefix: str, code: str) -> str:
    return f"{prefix}.{code}" if code.endswith("Exception") else f"{prefix}.{code}Exception"


def _plain(value: Any) -> Any:
    """botocore's parsed output as JSON: datetimes as ISO text, bytes as text (or base64 if not UTF-8)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    return value


class AwsSdk:
    """Calls kambda's own services for a state machine's tasks; see the module docstring."""

    def __init__(self, endpoint: str, region: str, role_key: bytes | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self._role_key = role_key
        self._clock = clock
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _credentials(self, role_arn: str, caller: str) -> Credentials | None:
        if self._role_key is None:
            return None
        session = roles.mint(self._role_key, role_arn, caller, self._clock(), ttl_s=900)
        return Credentials(session.access_key, session.secret, session.token)

    async def call(self, service: str, action: str, params: Any, *, role_arn: str, caller: str,
                   error_prefix: str | None = None) -> Any:
        prefix = error_prefix or ERROR_PREFIX.get(service, operation_name(service))
        if not self.endpoint:
            raise StatesError("States.Runtime", "No endpoint for AWS SDK integrations (KAMBDA_ENDPOINT_URL)")
        name = BOTOCORE_NAME.get(service, service)
        try:
            model = _models().get_service_model(name)
            operation = model.operation_model(operation_name(action))
        except Exception:
            raise StatesError("States.Runtime", f"The resource 'arn:aws:states:::aws-sdk:{service}:{action}' is "
                                                f"not a known service action") from None
        params = params if isinstance(params, dict) else {}
        try:
            if operation.input_shape is not None:
                validate_parameters(params, operation.input_shape)
            request = create_serializer(model.metadata["protocol"]).serialize_to_request(params, operation)
        except ParamValidationError as exc:
            raise StatesError(error_name(prefix, "Validation"), str(exc)) from None
        prepare_request_dict(request, self.endpoint)
        aws = AWSRequest(method=request["method"], url=request["url"], data=request["body"],
                         headers=dict(request["headers"]))
        credentials = self._credentials(role_arn, caller)
        if credentials is not None:
            signing = model.signing_name or model.endpoint_prefix
            SigV4Auth(credentials, signing, self.region).add_auth(aws)
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        body = aws.body if isinstance(aws.body, bytes | bytearray) else (aws.body or "").encode()
        try:
            async with self._http.request(aws.method, aws.url, data=body or None,
                                          headers=dict(aws.headers.items())) as response:
                status = response.status
                answer = {"status_code": status, "headers": dict(response.headers), "body": await response.read()}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StatesError("States.TaskFailed", f"{service}:{action} did not answer: {exc}") from None
        parser = create_parser(model.metadata["protocol"])
        if status >= 300:
            parsed = parser.parse(answer, operation.output_shape)
            error = parsed.get("Error") or {}
            code = str(error.get("Code") or f"HTTP{status}")
            raise StatesError(error_name(prefix, code), str(error.get("Message") or ""))
        return _plain(parser.parse(answer, operation.output_shape))
