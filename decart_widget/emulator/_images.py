"""Reference images arriving in ``set_image``: decode, check, moderate, turn into pixels.

Checks, in order, each with the error text sent in ``set_image_ack``:

1. base64 (raw, as docs/protocol.md says; a ``data:`` prefix and whitespace are tolerated);
2. size: at most ``max_bytes`` decoded (10 MB by default), measured before decoding;
3. type: PNG, JPEG, WebP, GIF or BMP, sniffed from the magic bytes;
4. moderation (see `moderation`);
5. dimensions: at most ``max_pixels`` (width x height, 4096 x 4096 by default), read from the
   file's header **before** anything is decoded: a few hundred KB of PNG can declare
   16000 x 16000 pixels, ~735 MB once decoded (checked again on the decoded frame);
6. the pixels decode (PyAV), giving an RGB ``uint8`` array.

`prepare` is CPU work: call it in an executor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import struct
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

from ._moderation import IMAGE_REJECTED, Moderator

RGB = npt.NDArray[np.uint8]

FORMATS = "PNG, JPEG, WebP, GIF or BMP"
#: The most pixels (width x height) a reference image may have.
MAX_IMAGE_PIXELS = 4096 * 4096


class ImageRejected(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ReferenceImage:
    data: bytes
    kind: str
    sha256: str
    pixels: RGB


def sniff(data: bytes) -> str | None:
    """The image type from its first bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM" and len(data) > 26:
        return "bmp"
    return None


_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def dimensions(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) from the header of an image of type ``kind``, or None if unreadable."""
    try:
        if kind == "png" and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if kind == "gif":
            width, height = struct.unpack("<HH", data[6:10])
            return int(width), int(height)
        if kind == "bmp":
            if struct.unpack("<I", data[14:18])[0] == 12:  # the old OS/2 header
                width, height = struct.unpack("<HH", data[18:22])
            else:
                width, height = struct.unpack("<ii", data[18:26])
            return abs(int(width)), abs(int(height))
        if kind == "jpeg":
            return _jpeg_dimensions(data)
        if kind == "webp":
            return _webp_dimensions(data)
    except struct.error:  # cut short
        return None
    return None


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            offset += 2
            continue
        length = struct.unpack(">H", data[offset + 2 : offset + 4])[0]
        if marker in _JPEG_FRAME_MARKERS:
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return int(width), int(height)
        if marker == 0xDA:  # start of scan before any frame header
            return None
        offset += 2 + length
    return None


def _webp_dimensions(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and data[20:21] == b"\x2f":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    return None


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse an image of more than ``max_pixels`` pixels, saying its size and the limit."""
    if width * height > max_pixels:
        side = math.isqrt(max_pixels)
        raise ImageRejected(
            f"Image too large: {width}x{height} pixels (limit {max_pixels} pixels, "
            f"e.g. {side}x{side})"
        )


def _decoded_size(text: str) -> int:
    return (len(text) * 3) // 4 - len(text) + len(text.rstrip("="))


def decode_base64(text: str, max_bytes: int) -> bytes:
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    text = "".join(text.split())
    size = _decoded_size(text)
    if size > max_bytes:
        raise ImageRejected(f"Image too large: {size} bytes (limit {max_bytes} bytes)")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("Invalid image data: not valid base64") from None


def decode_pixels(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> RGB:
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            check_pixels(stream.codec_context.width, stream.codec_context.height, max_pixels)
            frame = next(container.decode(stream))
            check_pixels(frame.width, frame.height, max_pixels)
            pixels: RGB = frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, StopIteration, ValueError, IndexError) as exc:
        raise ImageRejected(f"Image could not be decoded: {exc}") from None
    return pixels


def prepare(
    image_data: str,
    *,
    max_bytes: int,
    moderator: Moderator,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> ReferenceImage:
    """Run every check on a ``set_image`` payload; raise `ImageRejected` with the ack's text."""
    data = decode_base64(image_data, max_bytes)
    if len(data) > max_bytes:
        raise ImageRejected(f"Image too large: {len(data)} bytes (limit {max_bytes} bytes)")
    if not data:
        raise ImageRejected("Invalid image data: empty")
    kind = sniff(data)
    if kind is None:
        raise ImageRejected(f"Invalid image data: not an image (expected {FORMATS})")
    if not moderator.image_allowed(data):
        raise ImageRejected(IMAGE_REJECTED)
    size = dimensions(data, kind)
    if size is not None:
        check_pixels(*size, max_pixels)
    pixels = decode_pixels(data, max_pixels)
    return ReferenceImage(
        data=data, kind=kind, sha256=hashlib.sha256(data).hexdigest(), pixels=pixels
    )
