"""`decart_widget.emulator._images.dimensions`: the size read from each format's header, before
any pixel is decoded (the image-bomb check)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from decart_widget.emulator._images import ImageRejected, check_pixels, dimensions, sniff


def _encode(fmt: str, size: tuple[int, int], mode: str = "RGB", **options: Any) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (10, 200, 30) if mode == "RGB" else None).save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "mode", "options"),
    [
        ("PNG", "RGB", {}),
        ("JPEG", "RGB", {}),
        ("JPEG", "RGB", {"progressive": True}),
        ("GIF", "RGB", {}),
        ("BMP", "RGB", {}),
        ("WEBP", "RGB", {}),  # lossy: VP8
        ("WEBP", "RGB", {"lossless": True}),  # VP8L
        ("WEBP", "RGBA", {}),  # with alpha: VP8X
    ],
)
def test_dimensions_come_from_the_header(fmt: str, mode: str, options: dict[str, Any]) -> None:
    data = _encode(fmt, (321, 123), mode, **options)
    kind = sniff(data)
    assert kind is not None
    assert dimensions(data, kind) == (321, 123)


def test_a_truncated_header_reads_as_unknown() -> None:
    data = _encode("PNG", (10, 10))[:20]
    assert dimensions(data, "png") is None


def test_the_limit_names_the_size_and_the_limit() -> None:
    check_pixels(4096, 4096, 4096 * 4096)
    with pytest.raises(ImageRejected, match=r"16000x16000 pixels \(limit 16777216 pixels"):
        check_pixels(16000, 16000, 4096 * 4096)
