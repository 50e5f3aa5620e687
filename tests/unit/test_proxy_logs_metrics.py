"""Structured logs (redaction, prompt cutting) and the Prometheus text (no sockets)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re

from decart_widget.proxy._logs import (
    _ENCODER,
    BatchingStreamHandler,
    JsonFormatter,
    SessionLogger,
    _encode,
    configure_logging,
    cut_prompt,
)
from decart_widget.proxy._metrics import Metrics


def test_prompts_are_cut_to_80_characters() -> None:
    assert cut_prompt("short") == "short"
    assert cut_prompt("x" * 200) == "x" * 80 + "…"
    assert cut_prompt(None) is None


def test_json_lines_carry_the_session_fields_and_no_secret() -> None:
    stream = io.StringIO()
    package_logger = logging.getLogger("decart_widget")
    saved = (package_logger.level, package_logger.propagate)
    handler = configure_logging("INFO", stream=stream)
    try:
        log = SessionLogger(logging.getLogger("decart_widget.proxy.session"), "px_1", "alice", "m")
        log.event("prompt", prompt=cut_prompt("y" * 100))
        log.session = "emu_2"
        log.event(
            "upstream",
            url="ws://h/v1/stream?api_key=dct_live_abcdef123&model=m",
            token="dwp1.secret.sig",
            nested={"api_key": "dct_live_abcdef123", "ok": "ek_abcdefgh1234"},
        )
        logging.getLogger("decart_widget.proxy.app").debug("hidden at info level")
    finally:
        package_logger.removeHandler(handler)
        package_logger.level, package_logger.propagate = saved  # other tests use caplog
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["prompt", "upstream"]
    first, second = lines
    assert first["session"] == "px_1" and first["user"] == "alice" and first["level"] == "info"
    assert first["prompt"] == "y" * 80 + "…"
    assert second["session"] == "emu_2" and second["proxy_session"] == "px_1"
    text = stream.getvalue()
    assert "dct_live" not in text and "dwp1.secret" not in text and "ek_abcdefgh" not in text
    assert "token" not in second
    assert second["nested"] == {"ok": "***"}
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])


def test_the_commands_session_lines_are_the_same_with_or_without_a_record() -> None:
    """With the command's handler alone on the way, a session's event skips the `LogRecord`
    (`_logs._direct_sink`): its line must be the one the record would have made (same
    fields, same redaction), and a filter anywhere on the way gets records again."""
    stream = io.StringIO()
    root, package_logger = logging.getLogger(), logging.getLogger("decart_widget")
    saved = (list(root.handlers), root.level, package_logger.level, package_logger.propagate)
    session_logger = logging.getLogger("decart_widget.proxy.session")
    seen: list[logging.LogRecord] = []

    def remember(record: logging.LogRecord) -> bool:
        seen.append(record)
        return True

    handler = configure_logging("INFO", stream=stream, process=True)
    try:
        log = SessionLogger(session_logger, "px_1", "alice", "m")
        for filtered in (False, True):
            if filtered:
                session_logger.addFilter(remember)
            log.event("prompt", prompt="see api_key=dct_live_abcdef123", success=True, ack_ms=1.5)
            log.event("odd", logging.WARNING, session="theirs", token="dwp1.secret.sig")
        handler.flush()
    finally:
        session_logger.removeFilter(remember)
        for installed in list(root.handlers):
            root.removeHandler(installed)
        for old in saved[0]:
            root.addHandler(old)
        root.level, package_logger.level, package_logger.propagate = saved[1:]
    assert [record.msg for record in seen] == ["prompt", "odd"]  # the filtered round only
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    for line in lines:
        del line["ts"]
    direct, through_records = lines[:2], lines[2:]
    assert direct == through_records
    assert direct[0]["prompt"] == "see api_key=***" and direct[0]["ack_ms"] == 1.5
    assert direct[1]["session"] == "theirs" and direct[1]["level"] == "warning"
    assert "dct_live" not in stream.getvalue() and "dwp1.secret" not in stream.getvalue()


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_the_commands_handler_holds_info_lines_across_loop_turns() -> None:
    """Info lines logged in several loop turns go out in one ``write`` (held up to
    `BatchingStreamHandler.FLUSH_DELAY`, here made long); a warning writes everything held,
    in order, at once."""
    stream = CountingStream()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.FLUSH_DELAY = 60.0
    logger = logging.Logger("decart_widget.proxy.test_batching", logging.INFO)
    logger.addHandler(handler)

    async def log_over_three_turns() -> None:
        for turn in range(3):
            logger.info("line %d", turn)
            await asyncio.sleep(0)
        assert stream.writes == 0 and stream.getvalue() == ""
        logger.warning("now")
        assert stream.writes == 1

    asyncio.run(log_over_three_turns())
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["line 0", "line 1", "line 2", "now"]


def test_the_encoder_made_once_writes_what_json_writes() -> None:
    """`_encode` (the C encoder made once) is byte for byte `_ENCODER.encode`."""
    values = [
        {"prompt": 'Sketch \u00e9 \u2603 "quoted" \\ \n', "enhance": False, "ack_ms": 1.5},
        {"n": 3, "big": 2**70, "nan": float("nan"), "inf": float("inf"), "none": None},
        {"nested": {"a": [1, "b", {"c": 0.1}]}, "empty": {}, "list": []},
        "plain \x00 control",
    ]
    for value in values:
        assert _encode(value) == _ENCODER.encode(value)


def test_exceptions_are_logged_as_a_field() -> None:
    record = logging.LogRecord("decart_widget.proxy", logging.ERROR, "f", 1, "failed", None, None)
    try:
        raise RuntimeError("key dct_live_abcdef123 leaked")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    body = json.loads(JsonFormatter().format(record))
    assert "RuntimeError" in body["exc"] and "dct_live" not in body["exc"]


def test_metrics_render_in_prometheus_text_format() -> None:
    metrics = Metrics()
    metrics.sessions_active = 2
    metrics.forwarded("client_to_upstream", 10)
    metrics.forwarded("upstream_to_client", 5)
    metrics.forwarded("upstream_to_client", 5)
    metrics.ends["client_closed"] += 3
    metrics.refusals['odd"reason'] += 1
    metrics.generation_seconds = 12.0
    text = metrics.render()
    assert text.endswith("\n")
    assert "decart_proxy_sessions_active 2\n" in text
    assert 'decart_proxy_frames_forwarded_total{direction="upstream_to_client"} 2\n' in text
    assert 'decart_proxy_session_ends_total{reason="client_closed"} 3\n' in text
    assert 'decart_proxy_refusals_total{reason="odd\\"reason"} 1\n' in text
    assert "decart_proxy_generation_seconds_total 12\n" in text
    sample = re.compile(r'^decart_proxy_[a-z_]+(\{[a-z]+="(?:[^"\\]|\\.)*"\})? -?[0-9.e+]+$')
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
