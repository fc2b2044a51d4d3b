"""Logging of the platform's own components: one JSON object per line on stderr.

Every line of an invocation carries its request id: the gateway and the invoker set it in a
context variable for the duration of the request, and a filter copies it onto each record.
KAMBDA_LOG_FORMAT=text gives plain lines instead; KAMBDA_LOG_LEVEL sets the level (INFO).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("kambda_request_id", default="")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "component": self.component,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            entry["request_id"] = rid
        for key in ("function", "event"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(component: str) -> None:
    level = os.environ.get("KAMBDA_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("KAMBDA_LOG_FORMAT", "json").lower() == "text":
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s {component} %(name)s [%(request_id)s] %(message)s"))
    else:
        handler.setFormatter(JsonFormatter(component))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    # nats-py logs every reconnect attempt at ERROR; the services report what matters themselves.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
