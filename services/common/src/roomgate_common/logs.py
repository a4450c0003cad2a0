"""JSON-lines logging for every service (one object per line on stderr)."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from roomgate_common.telemetry import current_ids


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, as trace backends show them) to every record
    written inside a span, so a log line can be joined to its trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
            timestamp=False,
        )
    )
    handler.addFilter(TraceContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
