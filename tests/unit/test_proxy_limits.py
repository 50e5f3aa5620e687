"""Frame, buffer and rate limits (no sockets)."""

from __future__ import annotations

import base64

import pytest

from decart_widget.proxy._limits import (
    MAX_FRAME_BYTES,
    MAX_IMAGE_BYTES,
    BufferFull,
    Limits,
    PendingBuffer,
    TokenBucket,
)
from decart_widget.proxy._relay import _image_bytes


def test_a_frame_fits_a_10_mb_image_as_base64_and_not_much_more() -> None:
    encoded = 4 * -(-MAX_IMAGE_BYTES // 3)
    assert encoded + 1024 < MAX_FRAME_BYTES < encoded + 128 * 1024


def test_the_decoded_image_size_is_computed_without_decoding() -> None:
    for size in (0, 1, 2, 3, 1000, 1001):
        assert _image_bytes(base64.b64encode(b"x" * size).decode()) == size
    assert _image_bytes(None) == 0


def test_the_token_bucket_allows_bursts_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)
    assert bucket.take(0.5)  # 0.5 s at 2/s refilled one
    assert not bucket.take(0.5)
    assert all(bucket.take(100.0 + i * 0.01) for i in range(3))  # refills only up to the burst
    assert not bucket.take(100.03)


def test_the_pending_buffer_keeps_order_and_enforces_both_bounds() -> None:
    buffer = PendingBuffer(max_frames=2, max_bytes=10)
    buffer.push("abc")
    buffer.push("defg")
    with pytest.raises(BufferFull, match="at most 2 frames"):
        buffer.push("h")
    assert [buffer.pop(), buffer.pop()] == ["abc", "defg"]
    assert len(buffer) == 0 and buffer.size == 0
    buffer.push("0123456789")
    with pytest.raises(BufferFull):
        buffer.push("x")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_frame_bytes": 10},
        {"max_pending_frames": 0},
        {"prompt_rate": 0.0},
        {"prompt_burst": 0},
        {"max_sessions_per_user": 0},
        {"quota_seconds": -1.0},
        {"quota_period": "week"},
    ],
)
def test_invalid_limits_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Limits(**kwargs)  # type: ignore[arg-type]
