"""kambda's built-in Python runtime: the loop that runs a user's handler (awslambdaric's bootstrap.py).

Started inside every execution environment as ``python3 /path/to/kambda_runtime/bootstrap.py`` (by path,
not as part of a package), so it imports only the standard library and nothing from kambda. It
talks to the Runtime API the parent serves at ``http://$AWS_LAMBDA_RUNTIME_API``.

It follows AWS's ``awslambdaric`` (bootstrap.py, lambda_runtime_client.py, lambda_context.py,
lambda_runtime_marshaller.py) in what a function can observe: error types and messages, the error
document, the stack trace with the runtime's own frames removed, the context object, the log line
format. See :func:`main` for the order of things; :func:`load_handler` (initialisation) is kept
apart from :func:`run_loop` (serving invocations) so that environments can later be forked from a
pre-initialised process.
"""

import importlib
import logging
import os
import sys
import time

if __name__ == "__main__":
    # Started by path: Python put this package's own directory first on sys.path. Import the package
    # from its parent instead (so no module of ours shadows a user's by name); setup_task_root()
    # takes the parent off again before user code is imported.
    _here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) != _here]
    sys.path.insert(0, os.path.dirname(_here))

from kambda_runtime import RUNTIME_PACKAGE_DIR  # noqa: E402
from kambda_runtime.lambda_context import create_lambda_context  # noqa: E402
from kambda_runtime.lambda_runtime_client import ChannelClient, RuntimeApiError, RuntimeClient  # noqa: E402
from kambda_runtime.lambda_runtime_exception import (  # noqa: E402
    FaultException,
    InitError,
    error_from_exception,
    error_from_fault,
    flush_std_streams,
    log_error,
    make_xray_fault,
)
from kambda_runtime.lambda_runtime_marshaller import marshal_response, unmarshal_event  # noqa: E402

LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

#: The request being served, for the log filter (awslambdaric's _GLOBAL_AWS_REQUEST_ID).
_current_request_id = None
_current_tenant_id = None


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
    # The runtime's own directories must not be where user code imports from.
    runtime_dirs = {RUNTIME_PACKAGE_DIR, os.path.dirname(RUNTIME_PACKAGE_DIR)}
    sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) not in runtime_dirs]
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
