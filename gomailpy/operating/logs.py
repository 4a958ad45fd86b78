"""Logging set-up: readable text by default, JSON lines for log shippers.

Log calls pass context as `extra={"message_id": ..., "queue": ..., "provider": ...}`; the JSON
format turns each such key into a field. No email body or secret is ever passed to a logger.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from gomailpy.config.settings import LoggingSettings

# Fields a log call may attach with `extra=`; the JSON formatter copies exactly these.
CONTEXT_FIELDS = (
    "message_id",
    "queue",
    "provider",
    "outcome",
    "reason",
    "attempt",
    "count",
    "duration_s",
    "node",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any context fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(settings: LoggingSettings) -> None:
    formatter = (
        {"()": f"{__name__}.JsonFormatter"}
        if settings.format == "json"
        else {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"default": formatter},
            "handlers": {
                "stderr": {"class": "logging.StreamHandler", "formatter": "default"},
            },
            "root": {"level": settings.level, "handlers": ["stderr"]},
            # Third-party chatter that says nothing an operator needs at INFO.
            "loggers": {
                name: {"level": "WARNING"}
                for name in ("botocore", "aiobotocore", "aiohttp.access", "mail.log", "asyncio")
            },
        }
    )
