"""Reference images: accept what users have, send what the protocol wants (docs/protocol.md).

`image_bytes(image)` takes bytes, a path, a data URL, an http(s) URL, a PIL image or a numpy
array and returns encoded image bytes, checked to be an image and within the size limit.
`to_base64` gives the raw base64 (no ``data:`` prefix) that ``set_image`` carries.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from .protocol._constants import MAX_IMAGE_BYTES as MAX_IMAGE_BYTES
from .protocol._errors import InvalidInput

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def sniff(data: bytes) -> str | None:
    """The MIME type of encoded image bytes, or None when they are not a known image."""
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_image_bytes(data: bytes, limit: int = MAX_IMAGE_BYTES) -> bytes:
    if len(data) > limit:
        raise InvalidInput(
            f"image is {len(data) / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB. "
            "Resize or re-encode it (e.g. as JPEG) first."
        )
    if sniff(data) is None:
        raise InvalidInput("image data is not a PNG, JPEG, WebP, GIF or BMP image")
    return data


def image_bytes(image: Any, *, limit: int = MAX_IMAGE_BYTES, timeout: float = 20.0) -> bytes:
    """Encoded image bytes from any accepted kind of image."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return check_image_bytes(bytes(image), limit)
    if isinstance(image, np.ndarray):
        return check_image_bytes(_encode_array(image), limit)
    if _is_pil_image(image):
        return check_image_bytes(_encode_pil(image), limit)
    if isinstance(image, os.PathLike):
        return _read_path(Path(image), limit)
    if isinstance(image, str):
        if image.startswith("data:"):
            return check_image_bytes(_decode_data_url(image), limit)
        if image.startswith(("http://", "https://")):
            return check_image_bytes(_download(image, limit, timeout), limit)
        return _read_path(Path(image), limit)
    raise InvalidInput(
        "image must be bytes, a path, a data: or http(s) URL, a PIL image or a numpy array; "
        f"got {type(image).__name__}"
    )


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _read_path(path: Path, limit: int) -> bytes:
    if not path.is_file():
        raise InvalidInput(f"image file not found: {path}")
    size = path.stat().st_size
    if size > limit:
        raise InvalidInput(
            f"image file {path} is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB"
        )
    return check_image_bytes(path.read_bytes(), limit)


def _decode_data_url(url: str) -> bytes:
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise InvalidInput("data URL images must be base64-encoded (data:image/...;base64,...)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("data URL has invalid base64") from None


def _download(url: str, limit: int, timeout: float) -> bytes:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            response.raise_for_status()
            chunks: list[bytes] = []
            total = 0
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > limit:
                    raise InvalidInput(f"image at {url} is over the {limit / 1e6:.1f} MB limit")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise InvalidInput(f"could not download image {url}: {exc}") from None
    return b"".join(chunks)


def _is_pil_image(value: Any) -> bool:
    cls = type(value)
    return any(
        base.__module__.startswith("PIL.") and base.__name__ == "Image" for base in cls.__mro__
    )


def _encode_pil(image: Any) -> bytes:
    buffer = io.BytesIO()
    mode = image.mode
    if mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _encode_array(array: np.ndarray[Any, Any]) -> bytes:
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and float(array.max()) <= 1.0:
            array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
        else:
            raise InvalidInput(f"image arrays must be uint8 (or floats in 0..1), got {array.dtype}")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)):
        return encode_png(array)
    raise InvalidInput(f"image arrays must be HxW, HxWx3 or HxWx4, got shape {array.shape}")


def encode_png(array: np.ndarray[Any, Any]) -> bytes:
    """PNG-encode a uint8 array (uses Pillow when present, else a small zlib encoder)."""
    try:
        from PIL import Image
    except ImportError:
        return _png_without_pillow(array)
    squeezed = array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array
    buffer = io.BytesIO()
    Image.fromarray(squeezed).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_without_pillow(array: np.ndarray[Any, Any]) -> bytes:
    import struct
    import zlib

    if array.ndim == 2:
        array = array[:, :, None]
    height, width, channels = array.shape
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.concatenate(
        [np.zeros((height, 1), dtype=np.uint8), array.reshape(height, width * channels)], axis=1
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def decode_to_array(data: bytes) -> np.ndarray[Any, Any]:
    """Decode image bytes to an HxWx3 uint8 RGB array (needs Pillow, or PyAV as a fallback)."""
    try:
        from PIL import Image
    except ImportError:
        return _decode_with_av(data)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _decode_with_av(data: bytes) -> np.ndarray[Any, Any]:
    import av

    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    raise InvalidInput("image could not be decoded")
