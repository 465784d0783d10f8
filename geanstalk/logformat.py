"""``--log-format json``: one JSON object per log line, for log shippers.

Each line has ``time`` (UTC, RFC 3339 with milliseconds), ``level``,
``event`` (the message as the human format prints it) and ``fields``: the
logger's name, the pid, whatever a caller passed as ``extra={"fields": {...}}``,
and the traceback of an exception. The human format (``-V``) is unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"
        fields: dict[str, object] = {"logger": record.name, "pid": os.getpid()}
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            fields.update(extra)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        doc = {
            "time": stamp,
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "fields": fields,
        }
        return json.dumps(doc, default=str, separators=(",", ":"))


def configure(fmt: str, level: int, prog: str) -> None:
    """Set up the root logger on stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
