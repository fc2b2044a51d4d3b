"""The errors of the Amazon States Language: runtime errors (``States.*``) and definition diagnostics."""

from __future__ import annotations

from dataclasses import dataclass

ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
RUNTIME = "States.Runtime"
DATA_LIMIT = "States.DataLimitExceeded"
RESULT_PATH_MATCH = "States.ResultPathMatchFailure"
PARAMETER_PATH = "States.ParameterPathFailure"
INTRINSIC = "States.IntrinsicFailure"
QUERY_EVALUATION = "States.QueryEvaluationError"
NO_CHOICE = "States.NoChoiceMatched"
BRANCH_FAILED = "States.BranchFailed"
PERMISSIONS = "States.Permissions"
ITEM_READER_FAILED = "States.ItemReaderFailed"
RESULT_WRITER_FAILED = "States.ResultWriterFailed"
EXCEED_TOLERATED = "States.ExceedToleratedFailureThreshold"

# The payload quota of Step Functions: 256 KB of UTF-8 text per input, output, result or variable set.
PAYLOAD_LIMIT = 256 * 1024


class StatesError(Exception):
    """A runtime error of a state, named as AWS names it (``States.Runtime``, a Lambda function's errorType...).

    ``error`` and ``cause`` are what a Catcher's ``$.Error`` / ``$.Cause`` and the history's failure events carry.
    """

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


@dataclass(frozen=True)
class Diagnostic:
    """One finding of ValidateStateMachineDefinition: ``severity`` ERROR or WARNING, AWS's ``code``
    (SCHEMA_VALIDATION_FAILED, INVALID_JSON_DESCRIPTION, MISSING_TRANSITION_TARGET...), a ``message`` and the
    JSON-pointer-like ``location`` of the offending field (``/States/A/Next``)."""

    severity: str
    code: str
    message: str
    location: str = ""

    def as_aws(self) -> dict[str, str]:
        """The shape of one item of ValidateStateMachineDefinition's ``diagnostics``."""
        out = {"severity": self.severity, "code": self.code, "message": self.message}
        if self.location:
            out["location"] = self.location
        return out


class InvalidDefinition(Exception):
    """A definition with ERROR diagnostics; ``str()`` is the message of AWS's ``InvalidDefinition`` fault, e.g.
    ``Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: Missing 'Next' target: B at /States/A/Next'``."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.severity == "ERROR"] or diagnostics
        parts = [f"{d.code}: {d.message}" + (f" at {d.location}" if d.location else "") for d in errors]
        super().__init__("Invalid State Machine Definition: '" + ", ".join(parts) + "'")
