"""Structured logs: one JSON object a line, keyed by session, secrets redacted.

The proxy logs through ``logging.getLogger("decart_widget.proxy....")`` with its fields in
``extra={"fields": {...}}``. `JsonFormatter` renders a record as
``{"ts": ..., "level": ..., "logger": ..., "event": ..., "session": ..., ...}``. Every string goes
through `redact` (``api_key=``/``token=`` values, ``dct_``/``ek_`` keys, ``dwp1.`` tokens, URL
passwords) and the proxy's own key and secrets by value, and fields whose name says "secret",
"token", "key" or "password" are dropped, so a credential cannot reach a log line even by
mistake. Prompts are cut to 80 characters; ticks are never logged.

The command (``configure_logging(..., process=True)``) puts its handler on the root logger, so
every record of the process — aiohttp's parser errors with their tracebacks, asyncio's, any
library's — is one redacted JSON object a line (see `decart_widget._logging`).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from .._logging import (
    escape_controls,
    guard_library_loggers,
    install_process_handler,
    scrub,
)

PROMPT_LOG_CHARS = 80
_SECRET_FIELD_WORDS = ("secret", "token", "api_key", "apikey", "password", "authorization")
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "fields",
}


def cut_prompt(text: str | None, limit: int = PROMPT_LOG_CHARS) -> str | None:
    """The first ``limit`` characters of a prompt (with an ellipsis when cut)."""
    if text is None:
        return None
    return text if len(text) <= limit else text[:limit] + "…"


@functools.lru_cache(maxsize=1024)  # field names are few (the code's own)
def _is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_FIELD_WORDS)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    # scalars before `Mapping`, whose abstract isinstance check is slow (most fields are scalars)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items() if not _is_secret_field(str(k))}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return scrub(str(value))


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


class JsonFormatter(logging.Formatter):
    """Render log records as one JSON object per line."""

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float, msecs: float) -> str:
        second, text = self._second
        if int(created) != second:  # strftime once a second, not once a line
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(created)))
            self._second = (int(created), text)
        return f"{text}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": self._timestamp(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            body.update(fields)
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                body.setdefault(name, value)
        if record.exc_text:  # already rendered (and scrubbed) by `_logging.CleanRecords`
            body["exc"] = record.exc_text
        elif record.exc_info and record.exc_info[0] is not None:
            body["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            body["stack"] = record.stack_info
        return _ENCODER.encode(_clean(body))


class RedactingFormatter(logging.Formatter):
    """Plain-text logs with the same redaction (for a terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping) and fields:
            cleaned = _clean(fields)
            text += " " + " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in cleaned.items())
        head, newline, rest = scrub(text).partition("\n")
        # one line a record, except a traceback's own lines
        return escape_controls(head) + newline + escape_controls(rest, keep_newlines=True)


def configure_logging(
    level: int | str = logging.INFO,
    *,
    json_format: bool = True,
    stream: IO[str] | None = None,
    process: bool = False,
) -> logging.Handler:
    """Send ``decart_widget`` logs to ``stream`` (stderr) as JSON lines; returns the handler.

    ``process=True`` (the command) sends every record of the process there instead: the
    handler becomes the root logger's only one. Either way, aiohttp's and asyncio's records are
    scrubbed and rate-limited where they are made (`decart_widget._logging`).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_format
        else RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    logger = logging.getLogger("decart_widget")
    for old in list(logger.handlers):
        if getattr(old, "_decart_proxy_handler", False):
            logger.removeHandler(old)
    logger.setLevel(level)
    guard_library_loggers()
    if process:
        install_process_handler(handler, level)
        logger.propagate = True
        return handler
    handler._decart_proxy_handler = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
    return handler


_EVENT_LINE = 0  # set below: the line of `SessionLogger.event`


class SessionLogger:
    """Log events of one session, each carrying its id, user and model."""

    def __init__(self, logger: logging.Logger, proxy_session: str, user: str, model: str) -> None:
        self._logger = logger
        self.proxy_session = proxy_session
        self.session = proxy_session  # replaced by the service's session_id once known
        self.user = user
        self.model = model

    def event(self, name: str, level: int = logging.INFO, **fields: Any) -> None:
        if not self._logger.isEnabledFor(level):
            return
        base: dict[str, Any] = {
            "session": self.session,
            "proxy_session": self.proxy_session,
            "user": self.user,
            "model": self.model,
        }
        base.update(fields)
        logger = self._logger
        # The record is made here rather than by `Logger.log`, which would walk the stack for
        # the caller on every line (a prompt and its ack are two lines): the caller is always
        # this method, so its place is given as such.
        record = logger.makeRecord(
            logger.name, level, __file__, _EVENT_LINE, name, (), None, "event", {"fields": base}
        )
        logger.handle(record)


_EVENT_LINE = SessionLogger.event.__code__.co_firstlineno
