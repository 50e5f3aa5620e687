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

import asyncio
import functools
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import IO, TYPE_CHECKING, Any

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
    if type(value) is dict or isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items() if not _is_secret_field(str(k))}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return scrub(str(value))


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
#: `_ENCODER`'s C encoder, made once rather than per call as ``JSONEncoder.encode`` does (the
#: values it gets are `_clean`'s: fresh containers, so no circular check is needed).
_make_c_encoder: Callable[..., Callable[[Any, int], Iterable[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
_C_ENCODER = (
    _make_c_encoder(None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    if _make_c_encoder is not None
    else None
)


def _encode(value: Any) -> str:
    """``_ENCODER.encode(value)`` for `_clean`'s output, without its per-call set-up."""
    if _C_ENCODER is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODER(value, 0))


def _clean_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """`_clean` of a session event's fields (flat, mostly scalars), without a call per value."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if _is_secret_field(name):
            continue
        kind = type(value)
        if kind is str:
            out[name] = scrub(value)
        elif value is None or kind is bool or kind is int or kind is float:
            out[name] = value
        else:
            out[name] = _clean(value)
    return out


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
        attrs = record.__dict__
        prefix = attrs.get("_decart_prefix")
        # A session's event, untouched since `SessionLogger` made it (no traceback, no attribute
        # added by a filter): its session fields are already scrubbed and encoded.
        if (
            prefix is not None
            and len(attrs) == attrs["_decart_size"]
            and record.exc_info is None
            and not record.exc_text
            and not record.stack_info
        ):
            return self._format_event(record, prefix, attrs["_decart_fields"])
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

    def _format_event(self, record: logging.LogRecord, prefix: str, fields: dict[str, Any]) -> str:
        """The same line as `format`'s, with the session's part encoded once per session."""
        return self.event_line(
            record.levelname, record.name, record.msg, record.created, record.msecs, prefix, fields
        )

    def event_line(
        self,
        levelname: str,
        logger_name: str,
        name: object,
        created: float,
        msecs: float,
        prefix: str,
        fields: dict[str, Any],
    ) -> str:
        """A session event's line from its parts (see `SessionLogger`)."""
        head = _HEADS.get((levelname, logger_name))
        if head is None:
            encoded = _ENCODER.encode(_clean({"level": levelname.lower(), "logger": logger_name}))
            head = _HEADS[(levelname, logger_name)] = encoded[1:-1]
        event = _EVENTS.get(name) if type(name) is str else None
        if event is None:
            event = _encode(scrub(str(name)))
            if type(name) is str and len(_EVENTS) < 256:  # the code's own few event names
                _EVENTS[name] = event
        parts = [
            '{"ts":"',
            self._timestamp(created, msecs),
            '",',
            head,
            ',"event":',
            event,
            prefix,
        ]
        if fields:
            encoded = _encode(_clean_fields(fields))
            if len(encoded) > 2:  # not "{}": every field was a secret
                parts += [",", encoded[1:-1]]
        parts.append("}")
        return "".join(parts)


#: ``"level":...,"logger":...`` by (level name, logger name): the few our code uses.
_HEADS: dict[tuple[str, str], str] = {}
#: An event name, scrubbed and encoded, by name.
_EVENTS: dict[str, str] = {}


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
    handler: logging.StreamHandler[IO[str]] = (
        BatchingStreamHandler(stream or sys.stderr)
        if process
        else logging.StreamHandler(stream or sys.stderr)
    )
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


if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[IO[str]]
else:  # generic at run time only from Python 3.11
    _StreamHandler = logging.StreamHandler


class BatchingStreamHandler(_StreamHandler):
    """A stream handler that writes the lines of a few event-loop turns in one ``write``.

    Under load a proxy logs a few thousand lines a second (one a prompt); one system call each
    was a tenth of its CPU. A line logged on a thread running an event loop is held for up to
    `FLUSH_DELAY` seconds (a callback scheduled on that loop writes what is held then; holding
    only to the end of the loop turn saved nothing on a quiet machine, where each prompt's ack
    has a loop turn of its own); warnings and errors, lines logged where no loop runs and a
    256th held line write everything at once. ``flush`` (also called by `logging.shutdown` at
    exit) writes what is held. A process killed with SIGKILL loses at most the last
    `FLUSH_DELAY` seconds of info lines.
    """

    MAX_HELD_LINES = 256
    #: Seconds an info line may wait for the lines after it (bench/README.md, proxy_load).
    FLUSH_DELAY = 0.05

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._held: list[str] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None  # where a flush is scheduled
        self._flush_thread = 0  # the thread running `_flush_on`

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._hold(line, record.levelno)

    def emit_line(self, line: str, levelno: int) -> None:
        """Write a line formatted by the caller as `emit` writes a record's (`SessionLogger`)."""
        self.acquire()
        try:
            self._hold(line + self.terminator, levelno)
        finally:
            self.release()

    def _hold(self, line: str, levelno: int) -> None:
        self._held.append(line)
        if levelno >= logging.WARNING or len(self._held) >= self.MAX_HELD_LINES:
            self._write_held()
            return
        flush_on = self._flush_on
        if flush_on is not None:
            # A flush is scheduled: this thread's running loop will write the line (checked
            # without `asyncio.get_running_loop`, a `getpid` system call on Python 3.11).
            if self._flush_thread != threading.get_ident() or not flush_on.is_running():
                self._write_held()  # another thread's loop will flush later
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            self._write_held()  # no loop here
        else:
            self._flush_on = loop
            self._flush_thread = threading.get_ident()
            loop.call_later(self.FLUSH_DELAY, self.flush)

    def _write_held(self) -> None:
        if self._held:
            text = "".join(self._held)
            self._held.clear()
            try:
                self.stream.write(text)
                self.stream.flush()
            except Exception:  # as StreamHandler: report, never raise into the caller
                self.handleError(logging.makeLogRecord({"msg": "log write failed"}))

    def flush(self) -> None:
        self.acquire()
        try:
            self._flush_on = None
            self._write_held()
            if self.stream is not None and hasattr(self.stream, "flush"):
                self.stream.flush()
        finally:
            self.release()


_EVENT_LINE = 0  # set below: the line of `SessionLogger.event`
#: Field names a session's event must not use (they would repeat the line's own keys).
_RESERVED_FIELDS = frozenset(
    {"ts", "level", "logger", "event", "session", "proxy_session", "user", "model", "exc", "stack"}
)


class SessionLogger:
    """Log events of one session, each carrying its id, user and model."""

    def __init__(self, logger: logging.Logger, proxy_session: str, user: str, model: str) -> None:
        self._logger = logger
        self.proxy_session = proxy_session
        self.user = user
        self.model = model
        self.session = proxy_session  # replaced by the service's session_id once known

    @property
    def session(self) -> str:
        return self._session

    @session.setter
    def session(self, value: str) -> None:
        self._session = value
        # The session's fields of every line, scrubbed and encoded once (see `JsonFormatter`).
        base = {
            "session": value,
            "proxy_session": self.proxy_session,
            "user": self.user,
            "model": self.model,
        }
        self._prefix = "," + _ENCODER.encode(_clean(base))[1:-1]

    def event(self, name: str, level: int = logging.INFO, **fields: Any) -> None:
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        sink = _direct_sink(logger, level)
        if sink is not None and _RESERVED_FIELDS.isdisjoint(fields):
            created = time.time()
            formatter = sink.formatter
            assert isinstance(formatter, JsonFormatter)
            line = formatter.event_line(
                logging.getLevelName(level),
                logger.name,
                name,
                created,
                int((created - int(created)) * 1000) + 0.0,
                self._prefix,
                fields,
            )
            sink.emit_line(line, level)
            return
        base: dict[str, Any] = {
            "session": self._session,
            "proxy_session": self.proxy_session,
            "user": self.user,
            "model": self.model,
        }
        base.update(fields)
        logger.handle(_event_record(logger, level, name, base, fields, self._prefix))


def _direct_sink(logger: logging.Logger, level: int) -> BatchingStreamHandler | None:
    """The handler a session's event at ``level`` would reach alone, if that is the command's
    `BatchingStreamHandler` with its `JsonFormatter` and nothing on the way filters records:
    the event's line is then made and handed to it directly, the same line as through a
    `logging.LogRecord` (which costs about half of an event's time: the record, the filters,
    the handler's dispatch). None otherwise: the record path."""
    if logger.disabled:
        return None
    sink: BatchingStreamHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if (
                sink is not None
                or type(handler) is not BatchingStreamHandler
                or handler.filters
                or level < handler.level
                or type(handler.formatter) is not JsonFormatter
            ):
                return None
            sink = handler
        if not current.propagate:
            break
        current = current.parent
    return sink


#: A record's attributes that do not change from one of a thread's events to the next, by thread.
_templates: dict[int, dict[str, Any]] = {}


def _event_record(
    logger: logging.Logger,
    level: int,
    name: str,
    all_fields: dict[str, Any],
    fields: dict[str, Any],
    prefix: str,
) -> logging.LogRecord:
    """The `logging.LogRecord` of a session's event, as `Logger.makeRecord` would make it.

    Made from a per-thread template rather than by `Logger.log` (which walks the stack for the
    caller, always this module) or ``LogRecord.__init__`` (a ``getpid`` system call and a few
    path operations per line): the proxy logs thousands of these a second.
    """
    thread = threading.get_ident()
    template = _templates.get(thread)
    if template is None:
        made = logger.makeRecord(
            logger.name, level, __file__, _EVENT_LINE, name, (), None, "event", {"fields": {}}
        )
        template = dict(made.__dict__)
        template["_decart_start"] = made.created - made.relativeCreated / 1000.0
        if len(_templates) > 64:  # threads come and go: never grow without bound
            _templates.clear()
        _templates[thread] = template
    record = logging.LogRecord.__new__(logging.LogRecord)
    attrs = record.__dict__
    attrs.update(template)
    created = time.time()
    start = attrs.pop("_decart_start")
    attrs["name"] = logger.name
    attrs["msg"] = name
    attrs["levelno"] = level
    attrs["levelname"] = logging.getLevelName(level)
    attrs["created"] = created
    attrs["msecs"] = int((created - int(created)) * 1000) + 0.0
    attrs["relativeCreated"] = (created - start) * 1000.0
    if "taskName" in attrs:  # Python >= 3.12
        task = asyncio.current_task() if _loop_running() else None
        attrs["taskName"] = task.get_name() if task is not None else None
    attrs["fields"] = all_fields
    if _RESERVED_FIELDS.isdisjoint(fields):
        attrs["_decart_prefix"] = prefix
        attrs["_decart_fields"] = fields
        attrs["_decart_size"] = len(attrs) + 1
    return record


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


_EVENT_LINE = SessionLogger.event.__code__.co_firstlineno
