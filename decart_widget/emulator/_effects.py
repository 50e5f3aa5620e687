"""The emulator's "model": cheap, deterministic numpy image effects chosen by prompt keywords.

Keywords (case-insensitive whole words, plurals and the like; the first matching row wins):

==========  ===========================================================  ==========================
effect      keywords                                                     look
==========  ===========================================================  ==========================
``anime``   anime, cartoon, comic, manga                                 posterised colours, dark
                                                                         outlines
``sketch``  sketch, pencil                                               pencil lines on white
``noir``    noir, black and white, b&w, monochrome, grayscale/greyscale  high-contrast grey
``neon``    neon, cyberpunk, synthwave                                   glowing edges on dark
``invert``  invert, negative                                             inverted colours
``hue``     any other non-empty prompt                                   hue rotation derived from
                                                                         the prompt (crc32)
==========  ===========================================================  ==========================

An empty or ``None`` prompt is a passthrough. A reference image steers colour: per-channel
mean/std matching (Reinhard-style, in RGB) applied after the keyword effect.

Build an :class:`Effect` once per prompt/reference change with :func:`build_effect` and call it
per frame; :func:`render` is a one-shot convenience. Frames are ``HxWx3`` ``uint8`` RGB; the same
input always gives the same output.

Performance notes (the effect runs per frame beside VP8 on a 2-core machine):

* everything works on the interleaved buffer seen as ``H x W*3`` rows, with contiguous integer
  ufuncs; a pixel's horizontal neighbour is 3 samples on, so each channel is filtered against
  itself. numpy LUT indexing, strided and small-axis broadcast ops are several times slower;
* temporaries live in per-thread scratch buffers reused across frames: a fresh multi-megabyte
  array page-faults on every frame, which costs more than the arithmetic;
* ufunc scalars are passed as numpy scalars of the array's dtype (some numpy builds fall off
  the SIMD path for Python-int bounds in ``clip``/``minimum``).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "EFFECT_NAMES",
    "Effect",
    "Frame",
    "build_effect",
    "effect_name",
    "hue_degrees",
    "render",
]

_log = logging.getLogger("decart_widget.emulator.effects")

Frame = npt.NDArray[np.uint8]
_U16 = npt.NDArray[np.uint16]
_I16 = npt.NDArray[np.int16]
_S = TypeVar("_S", bound=np.generic)

EFFECT_NAMES: tuple[str, ...] = ("passthrough", "anime", "sketch", "noir", "neon", "invert", "hue")

_KEYWORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("anime", re.compile(r"\b(?:animes?|cartoon\w*|comics?|manga)\b")),
    ("sketch", re.compile(r"\b(?:sketch\w*|pencil\w*)\b")),
    (
        "noir",
        re.compile(
            r"\b(?:noir|black[\s_-]*(?:and|&|n)[\s_-]*white|b\s*[&/]\s*w"
            r"|monochrome|gr[ae]yscale)\b"
        ),
    ),
    ("neon", re.compile(r"\b(?:neons?|cyberpunk\w*|synthwave)\b")),
    ("invert", re.compile(r"\b(?:invert(?:s|ed|ing)?|negatives?)\b")),
)


def _normalise(prompt: str | None) -> str:
    return " ".join(prompt.lower().split()) if prompt else ""


def effect_name(prompt: str | None) -> str:
    """Name of the effect ``prompt`` selects: one of :data:`EFFECT_NAMES`."""
    text = _normalise(prompt)
    if not text:
        return "passthrough"
    for name, pattern in _KEYWORDS:
        if pattern.search(text):
            return name
    return "hue"


def hue_degrees(prompt: str | None) -> int:
    """Hue rotation (degrees, 30..330) a non-keyword prompt applies; stable across runs.

    Derived from crc32 of the lower-cased, whitespace-normalised prompt (never Python's salted
    ``hash``). Returns 0 for an empty prompt.
    """
    text = _normalise(prompt)
    if not text:
        return 0
    return 30 + zlib.crc32(text.encode("utf-8")) % 301


# --------------------------------------------------------------------------------------------
# Scratch buffers.


class _Workspace(threading.local):
    """Per-thread scratch memory, reused from frame to frame.

    Each tag owns one raw byte buffer, grown to the largest request seen and viewed with the
    requested shape and dtype, so frames of different sizes share memory instead of piling up.
    A tag holds one live array at a time, and its contents are stale: users overwrite what they
    read. Tags: ``x16`` widened frame; ``e``, ``t``, ``s`` frame-sized int16 temporaries;
    ``keep`` anime mask; ``p1``, ``p2``, ``p32``, ``grey`` planes; ``stage`` effect output
    before colour transfer.
    """

    def __init__(self) -> None:
        self.raw: dict[str, Frame] = {}

    def get(self, tag: str, shape: tuple[int, ...], dtype: type[_S]) -> npt.NDArray[_S]:
        kind = np.dtype(dtype)
        nbytes = math.prod(shape) * kind.itemsize
        raw = self.raw.get(tag)
        if raw is None or raw.size < nbytes:
            raw = np.empty(max(nbytes, 1), np.uint8)
            self.raw[tag] = raw
        result: npt.NDArray[_S] = raw[:nbytes].view(kind).reshape(shape)
        return result


_WORKSPACE = _Workspace()

_Kernel = Callable[[Frame, Frame, _Workspace], None]


# --------------------------------------------------------------------------------------------
# Building blocks. ``src``/``dst`` are C-contiguous HxWx3 uint8 frames of the same shape.

_I16_0, _I16_255 = np.int16(0), np.int16(255)


def _rows(frame: Frame) -> Frame:
    h, w, _ = frame.shape
    return frame.reshape(h, w * 3)


def _widen(src: Frame, ws: _Workspace) -> _I16:
    """The frame's samples as int16 rows (H x W*3)."""
    rows = _rows(src)
    x = ws.get("x16", rows.shape, np.int16)
    np.copyto(x, rows)
    return x


def _channel_edges(x: _I16, ws: _Workspace, reach: int = 1) -> _I16:
    """Per-sample central-difference gradient |dx| + |dy| (0..510) of int16 rows ``x``, between
    the samples ``reach`` pixels either side (a step edge answers in a band ``2 * reach`` wide).

    Shifts run on the flat buffer (2-D row slices are ~4x slower in numpy); the samples where a
    horizontal shift wraps into the neighbouring row (the first and last ``reach`` pixels) are
    zeroed after.
    """
    h, n = x.shape
    edges = ws.get("e", (h, n), np.int16)
    flat, xf = edges.reshape(-1), x.reshape(-1)
    side = 3 * reach  # samples per ``reach`` pixels
    if n >= 2 * side + 3:
        np.subtract(xf[2 * side :], xf[: -2 * side], out=flat[side:-side])
        np.abs(flat, out=flat)
        edges[:, :side] = 0
        edges[:, -side:] = 0
    else:
        edges.fill(0)
    if h > 2 * reach:
        rows = reach * n
        tmp = ws.get("t", (flat.size - 2 * rows,), np.int16)
        np.subtract(xf[2 * rows :], xf[: -2 * rows], out=tmp)
        np.abs(tmp, out=tmp)
        np.add(flat[rows:-rows], tmp, out=flat[rows:-rows])
    return edges


def _pixel_sum3(edges: _I16, ws: _Workspace) -> _I16:
    """Sum of each sample and its two neighbours.

    At a green sample this is exactly the pixel's R+G+B; at red/blue samples it borrows one
    sample of the adjacent pixel, invisible at these line widths and far cheaper than an exact
    per-pixel reduction.
    """
    total = ws.get("s", edges.shape, np.int16)
    np.copyto(total, edges)
    tf, ef = total.reshape(-1), edges.reshape(-1)
    np.add(tf[1:], ef[:-1], out=tf[1:])
    np.add(tf[:-1], ef[1:], out=tf[:-1])
    return total


def _luma(src: Frame, ws: _Workspace) -> _U16:
    """BT.601 luma plane (H x W, 0..255) as uint16."""
    h, w, _ = src.shape
    y = ws.get("p1", (h, w), np.uint16)
    t = ws.get("p2", (h, w), np.uint16)
    np.copyto(y, src[..., 0])
    y *= 77
    np.copyto(t, src[..., 1])
    t *= 150
    y += t
    np.copyto(t, src[..., 2])
    t *= 29
    y += t
    y += 128
    y >>= 8
    return y


def _grey_to_rgb(plane: npt.NDArray[Any], dst: Frame, ws: _Workspace) -> None:
    """Write a 0..255 integer plane into all three channels of ``dst``."""
    grey = ws.get("grey", plane.shape, np.uint8)
    np.copyto(grey, plane, casting="unsafe")
    for channel in range(3):
        dst[..., channel] = grey


def _percentiles(plane: _U16, low: float, high: float) -> tuple[int, int]:
    """Approximate ``low``/``high`` quantiles (0..1) of a 0..255 plane from a sparse sample."""
    h, w = plane.shape
    step = max(1, math.isqrt(h * w // 16384))
    hist = np.bincount(plane[::step, ::step].ravel(), minlength=256)
    cdf = np.cumsum(hist)
    total = int(cdf[-1])
    lo = int(np.searchsorted(cdf, low * total))
    hi = int(np.searchsorted(cdf, high * total))
    return lo, min(hi, 255)


# --------------------------------------------------------------------------------------------
# Keyword effects: each writes ``dst`` from ``src`` (reading ``src`` before writing ``dst``, so
# ``dst`` may be ``src``).


def _passthrough(src: Frame, dst: Frame, ws: _Workspace) -> None:
    np.copyto(dst, src)


def _invert(src: Frame, dst: Frame, ws: _Workspace) -> None:
    np.bitwise_not(src, out=dst)


_ANIME_EDGE_THRESHOLD = np.int16(150)  # summed central |dx|+|dy| over R, G, B


def _anime(src: Frame, dst: Frame, ws: _Workspace) -> None:
    edges = _pixel_sum3(_channel_edges(_widen(src, ws), ws), ws)
    keep = ws.get("keep", edges.shape, np.bool_)
    np.less_equal(edges, _ANIME_EDGE_THRESHOLD, out=keep)
    # The sum is exact at green samples: copy their verdict to R and B, so outlines are black.
    flat = keep.reshape(-1)
    flat[0::3] = flat[1::3]
    flat[2::3] = flat[1::3]
    # Posterise to 4 levels per channel (32, 96, 160, 224), then black outlines.
    rows = _rows(dst)
    np.bitwise_and(_rows(src), np.uint8(0xC0), out=rows)
    rows |= np.uint8(0x20)
    np.multiply(rows, keep.view(np.uint8), out=rows)


_SKETCH_FLOOR = np.int16(36)  # edge strength (R+G+B |dx|+|dy|) below which paper stays white


def _sketch(src: Frame, dst: Frame, ws: _Workspace) -> None:
    x = _widen(src, ws)
    h, n = x.shape
    # Strokes from the colour gradient (not luma, so isoluminant colour edges are drawn too):
    # the R+G+B sum is exact at the green samples.
    strength = _pixel_sum3(_channel_edges(x, ws), ws)
    value = ws.get("p1", (h, n // 3), np.int16)
    np.copyto(value, strength[:, 1::3])
    value -= _SKETCH_FLOOR
    value *= 3
    value >>= 1
    np.clip(value, _I16_0, _I16_255, out=value)
    # Paper shading: at most 31 levels darker where the source is dark.
    shade = ws.get("p2", value.shape, np.int16)
    np.copyto(shade, x[:, 1::3])
    shade ^= 255
    shade >>= 3
    value += shade
    np.subtract(_I16_255, value, out=value)
    np.clip(value, _I16_0, _I16_255, out=value)
    _grey_to_rgb(value, dst, ws)


_NOIR_OVERSHOOT = 24  # extra levels clipped at each end beyond the 1%/99% stretch


def _noir(src: Frame, dst: Frame, ws: _Workspace) -> None:
    y = _luma(src, ws)
    lo, hi = _percentiles(y, 0.01, 0.99)
    span = max(hi - lo, 16)  # do not blow up the noise of an almost flat frame
    # Map [lo, hi] to [-overshoot, 255 + overshoot] in 1/64 fixed point.
    gain = round(64 * (255 + 2 * _NOIR_OVERSHOOT) / span)
    t = ws.get("p32", y.shape, np.int32)
    np.copyto(t, y)
    t -= lo
    t *= gain
    t >>= 6
    t -= _NOIR_OVERSHOOT
    np.clip(t, np.int32(0), np.int32(255), out=t)
    _grey_to_rgb(t, dst, ws)


@functools.lru_cache(maxsize=4)
def _neon_tint(h: int, w: int) -> _U16:
    """Full-frame neon colour (0..224 per channel): magenta at the left to cyan at the right.

    Full size rather than one broadcast row: a contiguous multiply is ~4x faster. Read-only.
    """
    t = np.linspace(0.0, 1.0, w) if w > 1 else np.zeros(1)
    rgb = np.stack([224.0 - 176.0 * t, 36.0 + 188.0 * t, np.full(w, 224.0)], axis=1)
    row = np.rint(rgb).astype(np.uint16).reshape(1, w * 3)
    tint: _U16 = np.ascontiguousarray(np.broadcast_to(row, (h, w * 3)))
    tint.setflags(write=False)
    return tint


_NEON_FLOOR = np.int16(48)  # edge strength below which nothing glows (noise, soft shading)
#: Frame height per pixel of the neon lines' reach: the lines keep their share of the picture
#: at any size (a 1088x624 frame draws them as thick, relative to itself, as a 544x312 one).
_NEON_ROWS_PER_REACH = 360


def _neon_reach(height: int) -> int:
    return max(1, round(height / _NEON_ROWS_PER_REACH))


def _neon(src: Frame, dst: Frame, ws: _Workspace) -> None:
    x = _widen(src, ws)
    h, n = x.shape
    edges = _channel_edges(x, ws, _neon_reach(h))
    # Glow: a 9-sample (3-pixel) horizontal box by doubling, then 3 rows: at most 27 * 510,
    # fits int16. The flat shifts may bleed one pixel between the left and right borders.
    ef = edges.reshape(-1)
    a = ws.get("s", (h * n,), np.int16)
    b = ws.get("t", (h * n,), np.int16)
    if h * n > 8:
        np.add(ef[:-1], ef[1:], out=a[:-1])  # a[j] = e[j : j + 2]
        np.add(a[:-3], a[2:-1], out=b[:-3])  # b[j] = e[j : j + 4]
        np.add(b[:-7], b[4:-3], out=a[:-7])  # a[j] = e[j : j + 8]
        np.add(a[:-8], ef[8:], out=b[4:-4])  # b[j] = e[j - 4 : j + 5]
        b[:4] = 0
        b[-4:] = 0
    else:
        np.copyto(b, ef)
    light = ws.get("s", (h, n), np.int16)  # reuses a, no longer needed
    lf = light.reshape(-1)
    if h > 1:
        np.add(b[:-n], b[n:], out=lf[n:])  # rows r-1 and r
        np.add(lf[n:-n], b[2 * n :], out=lf[n:-n])  # and r+1
        np.add(b[:n], b[n : 2 * n], out=lf[:n])  # first row: rows 0 and 1
    else:
        np.copyto(lf, b)
    light >>= 3
    # Per-channel edges keep colour boundaries coloured; the glow carries the neon tint.
    light += edges
    light -= _NEON_FLOOR
    np.clip(light, _I16_0, _I16_255, out=light)
    glowing = light.view(np.uint16)
    np.multiply(glowing, _neon_tint(h, n // 3), out=glowing)  # <= 255 * 224: fits uint16
    glowing >>= 8
    # Dim background, an eighth of the source: at most 223 + 31, no clipping needed.
    x >>= 3
    light += x
    np.copyto(_rows(dst), light, casting="unsafe")


def _hue_kernel(degrees: int) -> _Kernel:
    """Rotation about the grey axis: a circulant 3x3 matrix in 1/64 fixed point.

    out_c = a*x_c + b*x_(c+1) + c*x_(c+2) with the same (a, b, c) for every channel, so it runs
    on the interleaved buffer and two channel-shifted copies of it.
    """
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    third = (1.0 - cos) / 3.0
    c_next = np.int16(round(64 * (third - sin / math.sqrt(3.0))))
    c_prev = np.int16(round(64 * (third + sin / math.sqrt(3.0))))
    c_self = np.int16(64 - c_next - c_prev)  # rows sum to 64 exactly: greys stay grey

    def hue(src: Frame, dst: Frame, ws: _Workspace) -> None:
        # Worst case 255 * (64 + 22) = 21930: inside int16.
        x = ws.get("x16", (src.size,), np.int16)
        np.copyto(x, src.reshape(-1))
        nxt = ws.get("t", x.shape, np.int16)  # x_(c+1)
        nxt[:-1] = x[1:]
        nxt[2::3] = x[0::3]
        prv = ws.get("s", x.shape, np.int16)  # x_(c+2)
        prv[1:] = x[:-1]
        prv[0::3] = x[2::3]
        x *= c_self
        nxt *= c_next
        x += nxt
        prv *= c_prev
        x += prv
        x += 32
        x >>= 6
        np.clip(x, _I16_0, _I16_255, out=x)
        np.copyto(dst.reshape(-1), x, casting="unsafe")

    return hue


# --------------------------------------------------------------------------------------------
# Colour transfer.

_STATS_SAMPLES = 4096
_TRANSFER_GAIN = (0.4, 2.5)  # keep the video legible whatever the reference's contrast


def _channel_stats(image: Frame) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-channel mean and standard deviation from a sparse, deterministic grid sample."""
    h, w, _ = image.shape
    step = max(1, math.isqrt(h * w // _STATS_SAMPLES))
    sample = np.ascontiguousarray(image[::step, ::step].reshape(-1, 3).T, dtype=np.float64)
    mean: npt.NDArray[np.float64] = sample.mean(axis=1)
    sample -= mean[:, None]
    std: npt.NDArray[np.float64] = np.sqrt((sample * sample).mean(axis=1))
    return mean, std


def _as_reference(reference: npt.ArrayLike) -> Frame:
    ref = np.asarray(reference)
    if ref.dtype != np.uint8:
        raise ValueError(f"reference image must be uint8, got {ref.dtype}")
    if ref.ndim == 2:
        ref = np.repeat(ref[..., None], 3, axis=2)
    elif ref.ndim == 3 and ref.shape[2] == 4:
        ref = ref[..., :3]
    if ref.ndim != 3 or ref.shape[2] != 3 or ref.shape[0] == 0 or ref.shape[1] == 0:
        raise ValueError(f"reference image must be HxWx3 (or HxW / HxWx4), got {ref.shape}")
    return ref


@functools.lru_cache(maxsize=16)
def _block_rows(h: int, n: int) -> int:
    """Largest divisor k of ``h`` with ``k * n`` at most 64 Ki samples (at least 1)."""
    return max((k for k in range(1, h + 1) if h % k == 0 and k * n <= 65536), default=1)


class _ColourTransfer:
    """Reinhard-style transfer: match each channel's mean and std to the reference's."""

    __slots__ = ("mean", "std")

    def __init__(self, reference: Frame) -> None:
        self.mean, self.std = _channel_stats(reference)

    def __call__(self, src: Frame, dst: Frame, ws: _Workspace) -> None:
        h, w, _ = src.shape
        mean, std = _channel_stats(src)
        gain = np.clip(self.std / np.maximum(std, 1.0), *_TRANSFER_GAIN)
        offset = self.mean - gain * mean
        # out = x * gain + offset in 1/32 fixed point: 255 * 80 + |offset| * 32 fits int16.
        gain_q = np.rint(gain * 32).astype(np.int16)
        offset_q = np.rint(offset * 32 + 16).astype(np.int16)
        t = _widen(src, ws)
        # Broadcast a per-sample pattern over blocks of rows: a long pattern row keeps numpy
        # close to its contiguous speed (a (3,) broadcast is ~50x slower).
        k = _block_rows(h, w * 3)
        blocks = t.reshape(h // k, k * w * 3)
        blocks *= np.tile(gain_q, k * w)
        blocks += np.tile(offset_q, k * w)
        t >>= 5
        np.clip(t, _I16_0, _I16_255, out=t)
        np.copyto(_rows(dst), t, casting="unsafe")


# --------------------------------------------------------------------------------------------
# Public API.

_KERNELS: dict[str, _Kernel] = {
    "passthrough": _passthrough,
    "anime": _anime,
    "sketch": _sketch,
    "noir": _noir,
    "neon": _neon,
    "invert": _invert,
}


def _check_frame(frame: npt.NDArray[Any]) -> Frame:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be an HxWx3 uint8 array, got {frame.shape} {frame.dtype}")
    contiguous: Frame = np.ascontiguousarray(frame)
    return contiguous


class Effect:
    """A compiled effect: call it with an HxWx3 uint8 RGB frame to get the transformed frame.

    Holds no per-frame state (scratch buffers are per thread), so one effect can be shared by
    sessions and threads.
    """

    __slots__ = ("_kernel", "_transfer", "degrees", "name", "prompt")

    def __init__(self, prompt: str | None = None, reference: npt.ArrayLike | None = None) -> None:
        self.prompt = prompt
        self.name = effect_name(prompt)
        self.degrees = hue_degrees(prompt) if self.name == "hue" else 0
        self._kernel: _Kernel = (
            _hue_kernel(self.degrees) if self.name == "hue" else _KERNELS[self.name]
        )
        self._transfer = (
            _ColourTransfer(_as_reference(reference)) if reference is not None else None
        )
        _log.debug("built %r for prompt %r", self, prompt)

    @property
    def has_reference(self) -> bool:
        return self._transfer is not None

    @property
    def is_identity(self) -> bool:
        """True when the effect returns a copy of its input (empty prompt, no reference)."""
        return self.name == "passthrough" and self._transfer is None

    def __call__(self, frame: npt.NDArray[Any], out: Frame | None = None) -> Frame:
        """Transform ``frame``; the result is a new array unless ``out`` (which may be ``frame``,
        or any C-contiguous uint8 array of the same shape) is given. ``frame`` is not modified
        unless it is ``out``."""
        src = _check_frame(frame)
        if out is None:
            out = np.empty_like(src)
        elif out.shape != src.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise ValueError("out must be a C-contiguous uint8 array shaped like frame")
        if src.size == 0:
            return out
        ws = _WORKSPACE
        if self._transfer is None:
            self._kernel(src, out, ws)
        elif self.name == "passthrough":
            self._transfer(src, out, ws)
        else:
            stage = ws.get("stage", src.shape, np.uint8)
            self._kernel(src, stage, ws)
            self._transfer(stage, out, ws)
        return out

    def __repr__(self) -> str:
        extra = f", degrees={self.degrees}" if self.name == "hue" else ""
        return f"Effect(name={self.name!r}{extra}, reference={self.has_reference})"


def build_effect(prompt: str | None, reference: npt.ArrayLike | None = None) -> Effect:
    """Compile the effect for ``prompt`` (and an optional reference image); reuse it per frame.

    Raises ValueError for a reference that is not a uint8 HxWx3 (or HxW / HxWx4) image.
    """
    return Effect(prompt, reference)


def render(
    frame: npt.NDArray[Any],
    prompt: str | None,
    reference: npt.ArrayLike | None = None,
) -> Frame:
    """One-shot: apply the effect that ``prompt`` (and ``reference``) select to ``frame``."""
    return build_effect(prompt, reference)(frame)
