"""kambda's built-in Python runtime, in awslambdaric's roles: ``bootstrap`` (the loop),
``lambda_runtime_client`` (the Runtime API and kambda's private channel), ``lambda_context``,
``lambda_runtime_marshaller``, ``lambda_runtime_exception`` (error documents).

Standard library only: it runs inside every execution environment, started by path as
``python3 .../kambda_runtime/bootstrap.py``, and imports nothing from kambda.
"""

import os

#: Frames from files here are the runtime's own; they are cut from a user's stack traces.
RUNTIME_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))
