"""Reference images arriving in ``set_image``: decode, check, moderate, turn into pixels.

Checks, in order, each with the error text sent in ``set_image_ack``:

1. base64 (raw, as PROTOCOL §8 says; a ``data:`` prefix and whitespace are tolerated);
2. size: at most ``max_bytes`` decoded (10 MB by default), measured before decoding;
3. type: PNG, JPEG, WebP, GIF or BMP, sniffed from the magic bytes;
4. moderation (see `moderation`);
5. the pixels decode (PyAV), giving an RGB ``uint8`` array.

`prepare` is CPU work: call it in an executor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

from .moderation import IMAGE_REJECTED, Moderator

RGB = npt.NDArray[np.uint8]

FORMATS = "PNG, JPEG, WebP, GIF or BMP"


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


def decode_pixels(data: bytes) -> RGB:
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            frame = next(container.decode(video=0))
            pixels: RGB = frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, StopIteration, ValueError, IndexError) as exc:
        raise ImageRejected(f"Image could not be decoded: {exc}") from None
    return pixels


def prepare(image_data: str, *, max_bytes: int, moderator: Moderator) -> ReferenceImage:
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
    pixels = decode_pixels(data)
    return ReferenceImage(
        data=data, kind=kind, sha256=hashlib.sha256(data).hexdigest(), pixels=pixels
    )
