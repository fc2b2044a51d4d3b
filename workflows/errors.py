"""The errors of the Step Functions API, as boto3's ``stepfunctions`` client names them (``__type``)."""

from __future__ import annotations

from kambda.aws.errors import KambdaError


class SfnError(KambdaError):
    status = 400
    error_type = "User"


def _error(code: str) -> type[SfnError]:
    return type(code, (SfnError,), {"code": code})


StateMachineDoesNotExist = _error("StateMachineDoesNotExist")
StateMachineAlreadyExists = _error("StateMachineAlreadyExists")
StateMachineDeleting = _error("StateMachineDeleting")
StateMachineTypeNotSupported = _error("StateMachineTypeNotSupported")
ExecutionDoesNotExist = _error("ExecutionDoesNotExist")
ExecutionAlreadyExists = _error("ExecutionAlreadyExists")
ExecutionNotRedrivable = _error("ExecutionNotRedrivable")
ExecutionLimitExceeded = _error("ExecutionLimitExceeded")
InvalidDefinition = _error("InvalidDefinition")
InvalidArn = _error("InvalidArn")
InvalidName = _error("InvalidName")
InvalidExecutionInput = _error("InvalidExecutionInput")
InvalidOutput = _error("InvalidOutput")
InvalidToken = _error("InvalidToken")
TaskDoesNotExist = _error("TaskDoesNotExist")
TaskTimedOut = _error("TaskTimedOut")
ActivityDoesNotExist = _error("ActivityDoesNotExist")
ActivityAlreadyExists = _error("ActivityAlreadyExists")
ResourceNotFound = _error("ResourceNotFound")
Conflict = _error("ConflictException")
Validation = _error("ValidationException")
TooManyTags = _error("TooManyTags")
MissingRequiredParameter = _error("MissingRequiredParameter")
