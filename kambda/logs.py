"""Logging of the platform's own components: one line per event on stderr."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(component: str) -> None:
    level = os.environ.get("KAMBDA_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    # nats-py logs every reconnect attempt at ERROR; the services report what matters themselves.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
