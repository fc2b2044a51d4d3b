"""Built-in runtimes: how an execution environment's process is started for each runtime name.

- ``python3.11``, ``python3.12``, ``python3.13``: kambda's Python runtime (kambda_runtime/) on
  the interpreter kambda runs on, started by its full path (a version-manager shim costs ~75 ms).
- ``nodejs18.x``, ``nodejs20.x``, ``nodejs22.x``: kambda's Node.js runtime (node_bootstrap.js) on
  the ``node`` found on PATH (or KAMBDA_NODE).
- ``provided``, ``provided.al2``, ``provided.al2023``: the package's own ``bootstrap`` executable.

Every one of them talks to the invoker through the Lambda Runtime API only.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from kambda.v1.function_pb2 import FunctionConfig

RUNTIME_DIR = Path(__file__).resolve().parent
PYTHON_BOOTSTRAP = RUNTIME_DIR / "kambda_runtime" / "bootstrap.py"
NODE_BOOTSTRAP = RUNTIME_DIR / "node_bootstrap.js"


class EntrypointError(Exception):
    """The environment's process cannot be started (Runtime.InvalidEntrypoint)."""


def node_binary() -> str | None:
    return os.environ.get("KAMBDA_NODE") or shutil.which("node")


def is_custom(runtime: str) -> bool:
    return runtime == "provided" or runtime.startswith("provided.")


def argv(config: FunctionConfig, code_dir: Path, python: str | None = sys.executable) -> list[str]:
    """The command line of an environment's process; ``python`` is the interpreter for Python
    runtimes (None: there is none this environment may run, see invoker/sandbox.py)."""
    if config.runtime.startswith("python3"):
        if python is None:
            raise EntrypointError("No Python interpreter on this invoker can be run by a sandboxed function "
                                  "(set KAMBDA_PYTHON)")
        return [python, str(PYTHON_BOOTSTRAP)]
    if config.runtime.startswith("nodejs"):
        node = node_binary()
        if node is None:
            raise EntrypointError("Couldn't find the node executable on this invoker")
        return [node, str(NODE_BOOTSTRAP)]
    if is_custom(config.runtime):
        bootstrap = code_dir / "bootstrap"
        if not bootstrap.is_file() or not os.access(bootstrap, os.X_OK):
            raise EntrypointError(f"Couldn't find valid bootstrap(s): [{bootstrap}]")
        return [str(bootstrap)]
    raise EntrypointError(f"no runtime for {config.runtime!r}")
