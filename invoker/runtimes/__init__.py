"""Built-in runtimes: how an execution environment's process is started for each runtime name.

``python3.11``, ``python3.12`` and ``python3.13`` all run on the interpreter kambda runs on
(started by its full path: a version-manager shim on PATH costs ~75 ms per start).
"""

from __future__ import annotations

import sys
from pathlib import Path

from kambda.v1.function_pb2 import FunctionConfig

RUNTIME_DIR = Path(__file__).resolve().parent
PYTHON_BOOTSTRAP = RUNTIME_DIR / "python_bootstrap.py"


def argv(config: FunctionConfig) -> list[str]:
    if config.runtime.startswith("python3"):
        return [sys.executable, str(PYTHON_BOOTSTRAP)]
    raise ValueError(f"no runtime for {config.runtime!r}")
