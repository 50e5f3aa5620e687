"""`decart_widget._logging`: scrubbing, escaping and rate-limiting records (no sockets)."""

from __future__ import annotations

import logging
import sys

from decart_widget._logging import CleanRecords, SafeTextFormatter, add_secret, escape_controls


def _record(msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("aiohttp.server", level, "f", 1, msg, args or None, None)


def test_control_characters_are_escaped_so_no_line_can_be_forged() -> None:
    assert escape_controls("model\n2026 INFO forged\r\x00\x1b[31m") == (
        "model\\n2026 INFO forged\\r\\x00\\x1b[31m"
    )
    assert escape_controls("a\nb\tc", keep_newlines=True) == "a\nb\\tc"
    assert escape_controls("plain text, ünïcode") == "plain text, ünïcode"


def test_records_are_scrubbed_message_and_traceback() -> None:
    add_secret("a-registered-secret-value")
    record = _record("bad line %r", b"GET /?token=dwp1.abc.def\x00 a-registered-secret-value")
    try:
        raise ValueError("quoted: /v1/stream?api_key=dct_live_123456 a-registered-secret-value")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert CleanRecords().filter(record)
    text = SafeTextFormatter("%(message)s").format(record)
    for secret in ("dwp1.abc", "dct_live_123456", "a-registered-secret-value"):
        assert secret not in text
    assert "ValueError" in text and "\n" in text  # the traceback keeps its lines


def test_a_flood_of_the_same_warning_is_rate_limited_and_then_counted() -> None:
    guard = CleanRecords(burst=3, window=3600.0)
    passed = [guard.filter(_record("Error handling request from %s", "1.2.3.4")) for _ in range(50)]
    assert passed == [True] * 3 + [False] * 47
    guard.window = 0.0  # the window has passed
    last = _record("Error handling request from %s", "1.2.3.4")
    assert guard.filter(last)
    assert "47 similar records suppressed" in last.getMessage()
    assert guard.filter(_record("another message"))  # other templates are counted apart
    assert guard.filter(_record("info is never limited", level=logging.INFO))
