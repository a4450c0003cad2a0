"""Keep tokens out of the logs: uvicorn logs WebSocket paths with their query string
(``/ws?token=...``); this filter rewrites such records before any handler sees them."""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"((?:^|[?&;\s])(?:token|access_token)=)[^&\s\"']+", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+")

LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "roomgate_gateway")


def redact(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", _TOKEN.sub(r"\1[redacted]", text))


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def install() -> None:
    """Attach the filter to the loggers that may see a request line (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
