"""Structured logs: stdlib logging rendered by structlog, JSON lines with ``SIYU_LOG_JSON``.

Library loggers (uvicorn, huey, alembic) and ours share one format; ``extra={...}`` fields
become keys of the event.
"""

from __future__ import annotations

import logging
import logging.config

import structlog

from siyu.core.settings import get_settings

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def _extras(_: object, __: str, event: dict[str, object]) -> dict[str, object]:
    record = event.get("_record")
    if isinstance(record, logging.LogRecord):
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                event.setdefault(key, value)
    return event


def configure(level: int = logging.INFO) -> None:
    as_json = get_settings().log_json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "structlog": {
                    "()": structlog.stdlib.ProcessorFormatter,
                    "foreign_pre_chain": [*shared, _extras],
                    "processors": [
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.format_exc_info,
                        renderer,
                    ],
                }
            },
            "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "structlog"}},
            "root": {"handlers": ["default"], "level": level},
            "loggers": {
                "uvicorn.access": {"level": logging.WARNING},
                "sqlalchemy.engine": {"level": logging.WARNING},
            },
        }
    )
