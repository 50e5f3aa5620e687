"""Log hygiene for the whole process: secrets scrubbed, control characters escaped, library
floods rate-limited.

Our own loggers are careful, but libraries are not: aiohttp logs a request line it cannot parse
(a NUL byte, a line over 8190 bytes) with a traceback quoting it — token, key and all — and
asyncio logs every failed ``accept()`` when file descriptors run out. `CleanRecords` is a
`logging.Filter` that rewrites such a record in place before any handler sees it: the message and
the traceback are scrubbed (`scrub`: `decart_widget.protocol._urls.redact` plus every secret
registered with `add_secret`), control characters in the message are escaped (so a ``%0A`` in a
query parameter cannot forge a log line), and the same warning is let through at most
``burst`` times per ``window`` seconds (the next one says how many were suppressed).

`guard_library_loggers` attaches it to aiohttp's and asyncio's loggers, where those records are
created, so they are clean whichever handlers the application installed. `SafeTextFormatter` is
the plain-text format of our commands, with the same scrubbing and escaping for every record.
"""

from __future__ import annotations

import logging
import re
import threading
import time

from .protocol._urls import redact

#: Loggers of the libraries whose records may quote what a client sent.
LIBRARY_LOGGERS = (
    "aiohttp.access",
    "aiohttp.client",
    "aiohttp.internal",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
    "asyncio",
)
MIN_SECRET_CHARS = 8

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\x85\u2028\u2029]")
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x00``...)."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(_escape_char, text)


def add_secret(value: str) -> None:
    """Scrub this exact value from every log record from now on (a key the process holds)."""
    if len(value) >= MIN_SECRET_CHARS:
        with _secrets_lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    """`redact` plus the registered secrets, wherever they appear."""
    text = redact(text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class CleanRecords(logging.Filter):
    """Scrub, escape and rate-limit records in place (see the module docstring)."""

    def __init__(self, burst: int = 10, window: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._seen: dict[tuple[str, object], tuple[float, int, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_decart_clean", False):
            return True
        suppressed = 0
        if record.levelno >= logging.WARNING:
            allowed, suppressed = self._admit(record)
            if not allowed:
                return False
        clean_record(record)
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} similar records suppressed)"
        return True

    def _admit(self, record: logging.LogRecord) -> tuple[bool, int]:
        key = (record.name, record.msg)
        now = time.monotonic()
        with self._lock:
            start, count, suppressed = self._seen.get(key, (now, 0, 0))
            if now - start >= self.window:
                start, count = now, 0
            if count >= self.burst:
                self._seen[key] = (start, count, suppressed + 1)
                return False, 0
            self._seen[key] = (start, count + 1, 0)
            if len(self._seen) > 1000:  # templates are few; never grow without bound
                self._seen.clear()
            return True, suppressed


def clean_record(record: logging.LogRecord) -> None:
    """Render the record's message and traceback now, scrubbed and escaped."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep what there is
        message = f"{record.msg!r} {record.args!r}"
    record.msg = escape_controls(scrub(message))
    record.args = None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = escape_controls(scrub(record.exc_text), keep_newlines=True)
    if record.stack_info:
        record.stack_info = escape_controls(scrub(record.stack_info), keep_newlines=True)
    record._decart_clean = True


_guard = CleanRecords()
_guard_lock = threading.Lock()


def guard_library_loggers() -> None:
    """Attach `CleanRecords` to aiohttp's and asyncio's loggers (once; idempotent)."""
    with _guard_lock:
        for name in LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            if _guard not in logger.filters:
                logger.addFilter(_guard)


class SafeTextFormatter(logging.Formatter):
    """Plain-text lines, each record scrubbed and its message's control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        if not getattr(record, "_decart_clean", False):
            clean_record(record)
        return super().format(record)


def install_process_handler(handler: logging.Handler, level: int | str) -> None:
    """Make ``handler`` the only handler of the root logger: every record of the process (ours,
    aiohttp's, asyncio's, any library's) goes through it. For commands, which own the process."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    guard_library_loggers()
