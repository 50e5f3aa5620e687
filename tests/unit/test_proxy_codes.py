"""Close-code mapping and reason cutting (no sockets)."""

from __future__ import annotations

import pytest

from decart_widget.protocol._errors import (
    AuthenticationError,
    ConcurrencyLimit,
    InsufficientCredits,
    InvalidInput,
    classify,
)
from decart_widget.proxy import codes


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (1000, "bye", (1000, "bye")),
        (1001, "server_shutdown", (1001, "server_shutdown")),
        (1011, "boom", (1011, "boom")),
        (1013, "Concurrent session limit reached.", (4013, "Concurrent session limit reached.")),
        (1013, "", (4013, "Concurrent session limit reached.")),
        (1008, "policy", (4008, "policy")),
        (1009, "", (4009, "upstream: frame too big")),
        (1002, "bad", (1011, "upstream protocol error 1002: bad")),
        (1006, "", (1011, "upstream connection lost")),
        (None, "", (1011, "upstream connection lost")),
        (1005, "", (1000, "")),
        (3000, "app", (3000, "app")),
        (4001, "Invalid API key", (4001, "Invalid API key")),
        (4004, "Unknown model", (4004, "Unknown model")),
        (2999, "odd", (1000, "odd")),
    ],
)
def test_upstream_codes_reach_the_client_without_losing_meaning(
    code: int | None, reason: str, expected: tuple[int, str]
) -> None:
    assert codes.from_upstream(code, reason) == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [(1000, 1000), (1001, 1001), (4000, 4000), (None, 1001), (1006, 1001), (1002, 1000)],
)
def test_client_codes_reach_the_upstream_sanitised(code: int | None, expected: int) -> None:
    assert codes.from_client(code) == expected


def test_reasons_are_cut_to_123_bytes_on_a_character_boundary() -> None:
    assert codes.cut_reason("short") == "short"
    assert codes.cut_reason(None) == ""
    cut = codes.cut_reason("é" * 100)  # 200 bytes
    assert len(cut.encode("utf-8")) <= codes.MAX_REASON_BYTES
    assert cut.endswith("...")
    assert codes.cut_reason(b"bytes") == "bytes"


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("Unauthorized: token expired", AuthenticationError),
        ("Usage quota exhausted (insufficient_credits): 5 of 5 s used", InsufficientCredits),
        ("Concurrent session limit reached for this user (1 open, limit 1).", ConcurrencyLimit),
        ("invalid model 'x': not served by this proxy", InvalidInput),
    ],
)
def test_refusal_reasons_classify_as_the_right_permanent_error(
    reason: str, error: type[Exception]
) -> None:
    classified = classify(reason)
    assert isinstance(classified, error)
    assert classified.permanent
