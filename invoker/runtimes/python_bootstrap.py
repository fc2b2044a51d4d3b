"""kambda's built-in Python runtime: a Lambda Runtime API client that runs a user's handler.

Started inside every execution environment as ``python3 /path/to/python_bootstrap.py`` (by path,
not as part of a package), so it imports only the standard library and nothing from kambda. It
talks to the Runtime API the parent serves at ``http://$AWS_LAMBDA_RUNTIME_API``.

It follows AWS's ``awslambdaric`` (bootstrap.py, lambda_runtime_client.py, lambda_context.py,
lambda_runtime_marshaller.py) in what a function can observe: error types and messages, the error
document, the stack trace with the runtime's own frames removed, the context object, the log line
format. See :func:`main` for the order of things; :func:`load_handler` (initialisation) is kept
apart from :func:`run_loop` (serving invocations) so that environments can later be forked from a
pre-initialised process.
"""

import http.client
import importlib
import json
import logging
import os
import socket
import struct
import sys
import time
import traceback

RUNTIME_API_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
XRAY_ERROR_CAUSE_HEADER = "Lambda-Runtime-Function-XRay-Error-Cause"
_XRAY_CAUSE_MAX = 1024 * 1024  # awslambdaric drops the X-Ray cause header from 1 MiB on

ERROR_LOG_IDENT = "\u00a0"  # awslambdaric indents logged tracebacks with NO-BREAK SPACE
LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

#: Code objects compiled from this file carry this name; their frames are cut from stack traces.
_THIS_FILE = sys._getframe().f_code.co_filename

#: The request being served, for the log filter (awslambdaric's _GLOBAL_AWS_REQUEST_ID).
_current_request_id = None
_current_tenant_id = None


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


# --------------------------------------------------------------------------- error documents


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
        if frame.filename != _THIS_FILE:
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


# --------------------------------------------------------------------------- marshalling


def _json_default(obj):
    # awslambdaric encodes with simplejson: Decimals become numbers (NaN stays NaN) and bytes
    # nested in a result are decoded as UTF-8. The decimal module is only looked up, never
    # imported: if nobody imported it there can be no Decimal to encode.
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(obj, decimal.Decimal):
        if obj.is_nan():
            return float("nan")
        if obj.is_finite() and obj == obj.to_integral_value():
            return int(obj)
        return float(obj)
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).decode("utf-8")
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_encoder = json.JSONEncoder(default=_json_default)


def to_json(obj):
    return _encoder.encode(obj)


def unmarshal_event(body, content_type):
    """The event handed to the handler: JSON-decoded unless the parent said it is not JSON."""
    media_type = content_type.split(";", 1)[0].strip().lower() if content_type else "application/json"
    if media_type != "application/json":
        return body
    try:
        return json.loads(body)
    except Exception as e:
        raise FaultException(FaultException.UNMARSHAL_ERROR, f"Unable to unmarshal input: {e}") from None


def marshal_response(response):
    """(body bytes, content type) for a handler's result."""
    if isinstance(response, bytes):
        return response, "application/unknown"
    try:
        return to_json(response).encode("utf-8"), "application/json"
    except Exception as e:
        raise FaultException(FaultException.MARSHAL_ERROR, f"Unable to marshal response: {e}") from None


# --------------------------------------------------------------------------- context


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(["
            f"cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}"
            "])"
        )


class Client:
    __slots__ = ["installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name"]

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(["
            f"installation_id={self.installation_id},"
            f"app_title={self.app_title},"
            f"app_version_name={self.app_version_name},"
            f"app_version_code={self.app_version_code},"
            f"app_package_name={self.app_package_name}"
            "])"
        )


class ClientContext:
    __slots__ = ["custom", "env", "client"]

    def __repr__(self):
        return f"{self.__class__.__name__}([custom={self.custom},env={self.env},client={self.client}])"


def make_obj_from_dict(cls, data):
    if data is None:
        return None
    obj = cls()
    for field in cls.__slots__:
        setattr(obj, field, data.get(field))
    return obj


class LambdaContext:
    """The ``context`` argument of a handler, as awslambdaric builds it.

    As on AWS, ``memory_limit_in_mb`` is the string from AWS_LAMBDA_FUNCTION_MEMORY_SIZE, and
    ``identity`` is always an object (its fields None without a Cognito identity).
    """

    def __init__(
        self,
        invoke_id,
        client_context,
        cognito_identity,
        epoch_deadline_time_in_ms,
        invoked_function_arn=None,
        tenant_id=None,
    ):
        self.aws_request_id = invoke_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id

        self.client_context = make_obj_from_dict(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = make_obj_from_dict(Client, self.client_context.client)

        self.identity = make_obj_from_dict(CognitoIdentity, {})
        if cognito_identity is not None:
            self.identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")

        self._epoch_deadline_time_in_ms = epoch_deadline_time_in_ms

    def get_remaining_time_in_millis(self):
        delta_ms = self._epoch_deadline_time_in_ms - int(time.time() * 1000)
        return delta_ms if delta_ms > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(["
            f"aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},"
            f"identity={self.identity},"
            f"tenant_id={self.tenant_id}"
            "])"
        )


def _parse_json_header(value, name):
    try:
        return json.loads(value)
    except Exception as e:
        raise FaultException(
            FaultException.LAMBDA_CONTEXT_UNMARSHAL_ERROR, f"Unable to parse {name} JSON: {e}"
        ) from None


def create_lambda_context(invocation):
    client_context = None
    if invocation.client_context:
        client_context = _parse_json_header(invocation.client_context, "Client Context")
    cognito_identity = None
    if invocation.cognito_identity:
        cognito_identity = _parse_json_header(invocation.cognito_identity, "Cognito Identity")
    return LambdaContext(
        invocation.request_id,
        client_context,
        cognito_identity,
        invocation.deadline_ms,
        invocation.invoked_function_arn,
        invocation.tenant_id,
    )


# --------------------------------------------------------------------------- Runtime API client


class RuntimeApiError(Exception):
    """The Runtime API could not be reached or answered with a non-2xx status."""


class Invocation:
    """One answer of ``/invocation/next``."""

    __slots__ = [
        "request_id",
        "deadline_ms",
        "invoked_function_arn",
        "trace_id",
        "client_context",
        "cognito_identity",
        "tenant_id",
        "content_type",
        "body",
    ]

    def __init__(self, headers, body):
        self.request_id = headers.get("Lambda-Runtime-Aws-Request-Id") or ""
        try:
            self.deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)
        except ValueError:
            self.deadline_ms = 0
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn")
        self.trace_id = headers.get("Lambda-Runtime-Trace-Id") or None
        self.client_context = headers.get("Lambda-Runtime-Client-Context") or None
        self.cognito_identity = headers.get("Lambda-Runtime-Cognito-Identity") or None
        self.tenant_id = headers.get("Lambda-Runtime-Aws-Tenant-Id") or None
        self.content_type = headers.get("Content-Type") or None
        self.body = body


class RuntimeClient:
    """A keep-alive HTTP/1.1 client of the Runtime API (one connection, opened lazily)."""

    def __init__(self, address):
        self.address = address
        self._conn = None

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self):
        conn = http.client.HTTPConnection(self.address)
        conn.connect()
        try:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._conn = conn
        return conn

    def request(self, method, path, body=None, headers=None):
        """(status, headers, body) of one request; a stale keep-alive connection is retried once."""
        for _ in range(2):
            reused = self._conn is not None
            try:
                conn = self._conn or self._connect()
                conn.request(method, RUNTIME_API_PREFIX + path, body, headers or {})
                response = conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError) as e:
                self.close()
                if reused:
                    continue
                raise RuntimeApiError(f"{method} {path}: {e!r}") from None
            if response.will_close:
                self.close()
            return response.status, response.headers, data
        raise RuntimeApiError(f"{method} {path}: connection closed")

    def wait_next_invocation(self):
        status, headers, body = self.request("GET", "/invocation/next")
        if not 200 <= status < 300:
            raise RuntimeApiError(f"GET /invocation/next: status {status}: {body[:1000]!r}")
        return Invocation(headers, body)

    def _post(self, path, body, headers):
        status, _, data = self.request("POST", path, body, headers)
        if not 200 <= status < 300:
            raise RuntimeApiError(f"POST {path}: status {status}: {data[:1000]!r}")

    def post_invocation_result(self, request_id, body, content_type="application/json"):
        self._post(f"/invocation/{request_id}/response", body, {"Content-Type": content_type})

    def post_invocation_error(self, request_id, error, xray_fault=None):
        headers = {"Content-Type": "application/json", ERROR_TYPE_HEADER: _header_value(error["errorType"])}
        if xray_fault is not None:
            cause = to_json(xray_fault)
            if len(cause) < _XRAY_CAUSE_MAX:
                headers[XRAY_ERROR_CAUSE_HEADER] = cause
        self._post(f"/invocation/{request_id}/error", to_json(error).encode("utf-8"), headers)

    def post_init_error(self, error):
        headers = {"Content-Type": "application/json", ERROR_TYPE_HEADER: _header_value(error["errorType"])}
        self._post("/init/error", to_json(error).encode("utf-8"), headers)


class ChannelClient:
    """The Runtime API over kambda's private channel: a socket inherited from the invoker.

    The same operations as RuntimeClient, framed as ``!II`` (meta length, body length), JSON meta,
    raw body, with no HTTP to parse on either side; the invoker measured it ~10x cheaper per
    invocation (bench/). Posts are not acknowledged: the next frame says what comes next.
    """

    _HEADER = struct.Struct("!II")

    def __init__(self, fd):
        self._sock = socket.socket(fileno=fd)
        self._sock.setblocking(True)
        self._outbox = []  # a posted result travels with the next "next", in one write
        self._inbox = bytearray()  # received, not yet taken: a whole frame usually comes in one recv

    def close(self):
        self._sock.close()

    def _send(self, meta, body=b"", hold=False):
        raw = json.dumps(meta).encode("utf-8")
        self._outbox.append(self._HEADER.pack(len(raw), len(body)) + raw + body)
        if hold:
            return
        frames, self._outbox = b"".join(self._outbox), []
        try:
            self._sock.sendall(frames)
        except OSError as e:
            raise RuntimeApiError(f"channel: {e!r}") from None

    def _recv_exactly(self, n):
        inbox = self._inbox
        while len(inbox) < n:
            try:
                chunk = self._sock.recv(min(max(n - len(inbox), 1 << 16), 1 << 20))
            except OSError as e:
                raise RuntimeApiError(f"channel: {e!r}") from None
            if not chunk:
                raise RuntimeApiError("channel closed by the invoker")
            inbox += chunk
        data = bytes(inbox[:n])
        del inbox[:n]
        return data

    def wait_next_invocation(self):
        self._send({"op": "next"})
        meta_len, body_len = self._HEADER.unpack(self._recv_exactly(self._HEADER.size))
        headers = json.loads(self._recv_exactly(meta_len))
        return Invocation(headers, self._recv_exactly(body_len) if body_len else b"")

    def post_invocation_result(self, request_id, body, content_type="application/json"):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self._send({"op": "response", "id": request_id, "type": content_type}, body, hold=True)

    def post_invocation_error(self, request_id, error, xray_fault=None):
        self._send({"op": "error", "id": request_id, "type": error["errorType"]}, to_json(error).encode("utf-8"),
                   hold=True)

    def post_init_error(self, error):
        self._send({"op": "init_error", "type": error["errorType"]}, to_json(error).encode("utf-8"))


def _header_value(value):
    """Error types are class names; one that is not printable ASCII cannot travel in a header."""
    if value.isascii() and value.isprintable():
        return value
    return "Unhandled"


# --------------------------------------------------------------------------- stdio and logging


class Unbuffered:
    """Wraps sys.stdout/sys.stderr so every write reaches the parent's pipe at once."""

    def __init__(self, stream):
        self.stream = stream

    def __getattr__(self, attr):
        return getattr(self.stream, attr)

    def write(self, msg):
        n = self.stream.write(msg)
        self.stream.flush()
        return n

    def writelines(self, msgs):
        self.stream.writelines(msgs)
        self.stream.flush()


class LambdaLoggerHandler(logging.Handler):
    def emit(self, record):
        try:
            sys.stdout.write(self.format(record))
        except Exception:
            self.handleError(record)


class LambdaLoggerFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id or ""
        record.tenant_id = _current_tenant_id
        return True


def setup_stdio():
    if not isinstance(sys.stdout, Unbuffered):
        sys.stdout = Unbuffered(sys.stdout)
    if not isinstance(sys.stderr, Unbuffered):
        sys.stderr = Unbuffered(sys.stderr)


def setup_logging():
    """A root handler printing awslambdaric's text format; the root level is left alone (WARNING)
    unless AWS_LAMBDA_LOG_LEVEL names one, as on AWS."""
    logging.Formatter.converter = time.gmtime
    handler = LambdaLoggerHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    handler.addFilter(LambdaLoggerFilter())
    root = logging.getLogger()
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    level = {None: "", "TRACE": "DEBUG"}.get(level, level).upper()
    if level in logging.getLevelNamesMapping():
        root.setLevel(level)
    root.addHandler(handler)


def setup_task_root():
    """Make LAMBDA_TASK_ROOT the working directory and the first place imports look."""
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # Running by path put this file's directory on sys.path; user code must not import from it.
    here = os.path.dirname(os.path.realpath(_THIS_FILE))
    sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) != here]
    if sys.path[:1] != [task_root]:
        sys.path.insert(0, task_root)
    os.chdir(task_root)


def set_trace_id(trace_id):
    if trace_id is not None:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)


def fatal(message):
    flush_std_streams()
    sys.stderr.write(f"[FATAL] {message}\n")
    flush_std_streams()
    sys.exit(1)


# --------------------------------------------------------------------------- init


def make_fault_handler(fault):
    def fault_handler(*args):
        raise fault

    return fault_handler


def load_handler(handler_name):
    """Import the handler's module and return the handler; raise InitError if that fails.

    A module without the named attribute is not an init error: the returned handler then fails
    every invocation with Runtime.HandlerNotFound (awslambdaric's make_fault_handler).
    """
    try:
        try:
            modname, fname = handler_name.rsplit(".", 1)
        except ValueError as e:
            raise FaultException(
                FaultException.MALFORMED_HANDLER_NAME, f"Bad handler '{handler_name}': {e}"
            ) from None
        try:
            if modname.split(".")[0] in sys.builtin_module_names:
                raise FaultException(
                    FaultException.BUILT_IN_MODULE_CONFLICT,
                    f"Cannot use built-in module {modname} as a handler module",
                )
            module = importlib.import_module(modname.replace("/", "."))
        except ImportError as e:
            raise FaultException(
                FaultException.IMPORT_MODULE_ERROR, f"Unable to import module '{modname}': {e}"
            ) from None
        except SyntaxError as e:
            trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
            raise FaultException(
                FaultException.USER_CODE_SYNTAX_ERROR, f"Syntax error in module '{modname}': {e}", trace
            ) from None
    except FaultException as e:
        raise InitError(error_from_fault(e)) from None
    except Exception as e:
        raise InitError(error_from_exception(e)) from None

    try:
        return getattr(module, fname)
    except AttributeError:
        message = f"Handler '{fname}' missing on module '{modname}'"
        return make_fault_handler(FaultException(FaultException.HANDLER_NOT_FOUND, message))


def report_init_error(client, error):
    log_error(error)
    flush_std_streams()
    try:
        client.post_init_error(error)
    except RuntimeApiError as e:
        sys.stderr.write(f"[FATAL] could not report the init error: {e}\n")


# --------------------------------------------------------------------------- loop


def handle_invocation(client, request_handler, invocation):
    """Run the handler for one invocation and post its result or error."""
    request_id = invocation.request_id
    error = None
    xray_fault = None
    try:
        context = create_lambda_context(invocation)
        event = unmarshal_event(invocation.body, invocation.content_type)
        result = request_handler(event, context)
        body, content_type = marshal_response(result)
    except FaultException as e:
        error = error_from_fault(e, request_id)
        xray_fault = make_xray_fault(e, os.getcwd())
    except Exception as e:
        error = error_from_exception(e, request_id)
        xray_fault = make_xray_fault(e, os.getcwd())

    if error is not None:
        log_error(error)
        flush_std_streams()
        client.post_invocation_error(request_id, error, xray_fault)
    else:
        flush_std_streams()
        client.post_invocation_result(request_id, body, content_type)


def run_loop(client, request_handler):
    """Serve invocations forever. Only a Runtime API failure, or a SystemExit/KeyboardInterrupt
    out of the handler, ends it."""
    global _current_request_id, _current_tenant_id
    while True:
        try:
            invocation = client.wait_next_invocation()
        except RuntimeApiError as e:
            fatal(f"LAMBDA_RUNTIME Failed to get next invocation: {e}")
        _current_request_id = invocation.request_id
        _current_tenant_id = invocation.tenant_id
        set_trace_id(invocation.trace_id)
        try:
            handle_invocation(client, request_handler, invocation)
        except RuntimeApiError as e:
            # The parent refused what we posted (or went away); /next will tell which.
            flush_std_streams()
            sys.stderr.write(f"[ERROR] LAMBDA_RUNTIME Failed to post the invocation outcome: {e}\n")


def main():
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        fatal("AWS_LAMBDA_RUNTIME_API is not set")
    setup_stdio()
    setup_logging()
    setup_task_root()
    channel = os.environ.pop("_KAMBDA_RUNTIME_FD", None)
    client = ChannelClient(int(channel)) if channel else RuntimeClient(address)
    try:
        request_handler = load_handler(os.environ.get("_HANDLER", ""))
    except InitError as e:
        report_init_error(client, e.error)
        client.close()
        sys.exit(1)
    run_loop(client, request_handler)


if __name__ == "__main__":
    main()
