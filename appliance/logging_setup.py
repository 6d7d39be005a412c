"""How the server logs: ``[logging]`` settings, the text and JSON formats, the access log.

``[logging]`` in the settings file (``APPLIANCE_LOG_LEVEL``, ``APPLIANCE_LOG_FORMAT``,
``APPLIANCE_ACCESS_LOG`` in the environment; ``--log-level``, ``--log-format``,
``--access-log`` on ``appliance serve``):

    [logging]
    level = "info"        # debug | info | warning | error
    format = "json"       # text (default) | json: one JSON object per line
    access_log = true     # one line per HTTP request (logger appliance.access)

A JSON line carries ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the
``extra=`` fields of the call (the access log's method, path, status, ...) and, for an
error with a traceback, ``exception``. Everything logs to stderr (the journal under
systemd). uvicorn's own loggers are not configured by uvicorn (``log_config=None``): they
go through the same handler and format.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

import msgspec

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "appliance.access"
#: LogRecord attributes that are not ``extra=`` fields
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class LoggingSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[logging]`` in the TOML file."""

    #: debug | info | warning | error; None: the top-level ``log_level`` (older spelling)
    level: str | None = None
    #: text | json
    format: str = "text"
    #: one line per HTTP request; off by default (the request path then pays nothing)
    access_log: bool = False

    def problem(self) -> str | None:
        """What is wrong with these settings, in words, or None."""
        if self.level is not None and self.level.lower() not in LEVELS:
            return f"logging.level must be one of {', '.join(LEVELS)}; got {self.level!r}"
        if self.format.lower() not in FORMATS:
            return f"logging.format must be one of {', '.join(FORMATS)}; got {self.format!r}"
        return None


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text", *, access_log: bool = False,
                  stream: TextIO | None = None) -> None:
    """Log records at ``level`` and above to ``stream`` (stderr) in ``fmt``; with
    ``access_log`` the access lines are written whatever the level."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt.lower() == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # an operator who turns the access log on wants its lines at level warning too
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if access_log else logging.WARNING)


def uvicorn_level(level: str) -> str:
    """uvicorn's own loggers stay at warning or above: its info lines (start-up banner,
    every connection at debug) repeat what the appliance logs itself."""
    return level.lower() if level.lower() in ("warning", "error") else "warning"
