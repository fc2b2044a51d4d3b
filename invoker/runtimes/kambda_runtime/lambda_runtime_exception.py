"""Errors the runtime reports and the error documents it posts (awslambdaric's
lambda_runtime_exception.py and the error half of bootstrap.py): the exact
``{errorMessage, errorType, requestId, stackTrace}`` body, stack traces with the runtime's own frames
cut, the X-Ray cause, and the text log of an error."""

import os
import sys
import traceback

from kambda_runtime import RUNTIME_PACKAGE_DIR

ERROR_LOG_IDENT = "\u00a0"  # awslambdaric indents logged tracebacks with NO-BREAK SPACE


class FaultException(Exception):
    """An error the runtime reports on the user's behalf (awslambdaric's FaultException)."""

    MARSHAL_ERROR = "Runtime.MarshalError"
    UNMARSHAL_ERROR = "Runtime.UnmarshalError"
    USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
    HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
    IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
    BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
    MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
    LAMBDA_CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"
    LAMBDA_RUNTIME_CLIENT_ERROR = "Runtime.LambdaRuntimeClientError"

    def __init__(self, exception_type, msg, trace=None):
        super().__init__(msg)
        self.exception_type = exception_type
        self.msg = msg
        self.trace = trace


class InitError(Exception):
    """Initialisation failed; ``error`` is the error document to post to ``/init/error``."""

    def __init__(self, error):
        super().__init__(error["errorMessage"])
        self.error = error


def make_error(error_message, error_type, stack_trace, request_id=None):
    return {
        "errorMessage": error_message if error_message else "",
        "errorType": error_type if error_type else "",
        "requestId": request_id if request_id is not None else "",
        "stackTrace": stack_trace if stack_trace else [],
    }


def _safe_str(value):
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__} object>"


def user_frames(tb):
    """The traceback's frames without the runtime's own leading frames (as awslambdaric cuts them)."""
    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if os.path.dirname(os.path.realpath(frame.filename)) != RUNTIME_PACKAGE_DIR:
            return frames[i:]
    return []


def error_from_exception(exc, request_id=None):
    """The error document for an exception raised by user code."""
    return make_error(
        _safe_str(exc),
        type(exc).__name__,
        traceback.format_list(user_frames(exc.__traceback__)),
        request_id,
    )


def error_from_fault(fault, request_id=None):
    return make_error(fault.msg, fault.exception_type, fault.trace, request_id)


def make_xray_fault(exc, working_dir):
    """The X-Ray error cause awslambdaric sends alongside an invocation error."""
    stack = []
    paths = []
    if exc is not None and not isinstance(exc, FaultException):
        for frame in user_frames(exc.__traceback__):
            stack.append({"label": frame.name, "path": frame.filename, "line": frame.lineno})
            if frame.filename not in paths:
                paths.append(frame.filename)
        ex_type, ex_msg = type(exc).__name__, _safe_str(exc)
    else:
        ex_type, ex_msg = "LambdaValidationError", exc.msg if exc is not None else ""
    return {
        "working_directory": working_dir,
        "exceptions": [{"message": ex_msg, "type": ex_type, "stack": stack}],
        "paths": paths,
    }


def _replace_line_indentation(line, indent_char, new_indent_char):
    stripped = line.lstrip(indent_char)
    return new_indent_char * (len(line) - len(stripped)) + stripped


def format_error_log(error):
    """awslambdaric's text log of an error: ``[ERROR] Type: message`` then the traceback."""
    description = "[ERROR]"
    if error.get("errorType"):
        description += " " + error["errorType"]
    if error.get("errorMessage"):
        if error.get("errorType"):
            description += ":"
        description += " " + error["errorMessage"]
    lines = [description]
    stack_trace = error.get("stackTrace")
    if stack_trace is not None:
        lines.append("Traceback (most recent call last):")
        for element in stack_trace:
            if element == "":
                lines.append("")
            else:
                for line in element.splitlines():
                    lines.append(_replace_line_indentation(line, " ", ERROR_LOG_IDENT))
    return "\n".join(lines) + "\n"


def log_error(error):
    try:
        sys.stderr.write(format_error_log(error))
    except Exception:
        pass


def flush_std_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
