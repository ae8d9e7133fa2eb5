"""Logging: structlog, key-value, one line per event.

Libraries log through the standard `logging` module and structlog alike;
both end up in the same renderer so a run's lines can be grepped by
`run_id=` and `request_id=` whichever layer wrote them.

No query string reaches a log line whole: a URL may carry a credential
(`?token=`, a login `?code=`), so the access log keeps every parameter's
name and replaces its value with `[redacted]` (`redact_access_log`).
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["AccessLogRedaction", "configure_logging", "redact_access_log", "redact_query"]

_ACCESS_LOGGER = "uvicorn.access"
_REDACTED = "[redacted]"


def redact_query(path: str) -> str:
    """`path` with each query value replaced: `/a?token=s` → `/a?token=[redacted]`."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    names = (part.partition("=")[0] for part in query.split("&") if part)
    return f"{base}?" + "&".join(f"{name}={_REDACTED}" for name in names)


class AccessLogRedaction(logging.Filter):
    """Rewrites uvicorn's access records (`client, method, path, version, status`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def redact_access_log() -> None:
    """Install `AccessLogRedaction` on uvicorn's access logger, once per process."""
    logger = logging.getLogger(_ACCESS_LOGGER)
    if not any(isinstance(f, AccessLogRedaction) for f in logger.filters):
        logger.addFilter(AccessLogRedaction())


def configure_logging(level: str = "info", *, json: bool = False) -> None:
    """Route structlog and stdlib logging to stderr at `level`."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.processors.LogfmtRenderer()
    )
    structlog.configure(
        processors=[*processors, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    redact_access_log()
