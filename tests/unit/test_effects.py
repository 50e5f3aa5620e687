"""The emulator's keyword effects: each keyword's visible property, on synthetic frames."""

from __future__ import annotations

import math
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pytest

from decart_widget.emulator._effects import (
    EFFECT_NAMES,
    Effect,
    build_effect,
    effect_name,
    hue_degrees,
    render,
)

Frame = npt.NDArray[np.uint8]

H, W = 120, 160
# Red block rows/columns, cyan block rows/columns (see _scene).
RED_ROWS, RED_COLS = (H // 4, 3 * H // 4), (W // 4, W // 2)
CYAN_ROWS, CYAN_COLS = (H // 3, 2 * H // 3), (5 * W // 8, 7 * W // 8)

ALL_PROMPTS = ["", "anime", "pencil sketch", "film noir", "neon city", "invert", "underwater"]


def _scene(h: int = H, w: int = W) -> Frame:
    """Gentle (edge-free) gradient background with two flat, saturated blocks."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = 40 + (xx * 60) // max(w, 1)
    img[..., 1] = 60 + (yy * 60) // max(h, 1)
    img[..., 2] = 90
    img[RED_ROWS[0] : RED_ROWS[1], RED_COLS[0] : RED_COLS[1]] = (220, 40, 40)
    img[CYAN_ROWS[0] : CYAN_ROWS[1], CYAN_COLS[0] : CYAN_COLS[1]] = (40, 200, 220)
    return img


def _edge_mask(h: int = H, w: int = W) -> npt.NDArray[np.bool_]:
    """Pixels within one pixel of a block boundary (where every effect must see an edge)."""
    mask = np.zeros((h, w), bool)
    for (r0, r1), (c0, c1) in ((RED_ROWS, RED_COLS), (CYAN_ROWS, CYAN_COLS)):
        inside = np.zeros((h, w), bool)
        inside[r0:r1, c0:c1] = True
        grown = np.zeros((h, w), bool)
        grown[r0 - 1 : r1 + 1, c0 - 1 : c1 + 1] = True
        shrunk = np.zeros((h, w), bool)
        shrunk[r0 + 1 : r1 - 1, c0 + 1 : c1 - 1] = True
        mask |= grown & ~shrunk
    return mask


def _flat_mask(h: int = H, w: int = W) -> npt.NDArray[np.bool_]:
    """Pixels at least 4 pixels away from any block boundary and from the frame border."""
    edge = _edge_mask(h, w)
    near = np.zeros_like(edge)
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            near |= np.roll(edge, (dy, dx), axis=(0, 1))
    near[:4] = near[-4:] = True
    near[:, :4] = near[:, -4:] = True
    return ~near


def _chroma_angle(rgb: npt.NDArray[np.float64]) -> float:
    """Angle (degrees) of a colour around the grey axis; hue rotation adds to it."""
    r, g, b = (float(v) for v in rgb)
    return math.degrees(math.atan2(math.sqrt(3.0) / 2.0 * (g - b), r - (g + b) / 2.0)) % 360.0


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


# --------------------------------------------------------------------------------------------
# Prompt -> effect selection.


@pytest.mark.parametrize(
    ("prompt", "name"),
    [
        (None, "passthrough"),
        ("", "passthrough"),
        ("   \n\t", "passthrough"),
        ("anime", "anime"),
        ("An ANIME girl", "anime"),
        ("cartoonish dog", "anime"),
        ("sketch", "sketch"),
        ("Pencil drawing", "sketch"),
        ("noir", "noir"),
        ("Black and White photo", "noir"),
        ("black-and-white", "noir"),
        ("neon", "neon"),
        ("CYBERPUNK street", "neon"),
        ("invert", "invert"),
        ("inverted colours", "invert"),
        ("a photo negative", "invert"),
        ("underwater", "hue"),
        ("a blackboard in white chalk", "hue"),  # not the "black and white" phrase
        ("anime neon", "anime"),  # table order decides
        ("an invertebrate", "hue"),  # whole words only
        ("neonatal ward", "hue"),
        ("B&W portrait", "noir"),
        ("sketchy pencils", "sketch"),
    ],
)
def test_effect_name(prompt: str | None, name: str) -> None:
    assert effect_name(prompt) == name
    assert name in EFFECT_NAMES
    assert build_effect(prompt).name == name


def test_hue_degrees_is_a_stable_crc32_of_the_normalised_prompt() -> None:
    assert hue_degrees("underwater") == 30 + zlib.crc32(b"underwater") % 301 == 262
    assert hue_degrees("  UnderWater ") == 262
    assert hue_degrees("a   red\tcar") == hue_degrees("A red car")
    assert hue_degrees("underwater") != hue_degrees("van gogh")
    assert hue_degrees("") == 0
    assert all(30 <= hue_degrees(f"prompt {i}") <= 330 for i in range(200))


# --------------------------------------------------------------------------------------------
# Generic properties.


@pytest.mark.parametrize("prompt", ALL_PROMPTS)
@pytest.mark.parametrize(
    ("h", "w"), [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (17, 31), (61, 33), (361, 641)]
)
def test_shape_dtype_and_odd_sizes(prompt: str, h: int, w: int) -> None:
    rng = np.random.default_rng(h * 1000 + w)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    before = img.copy()
    reference = rng.integers(0, 256, (5, 9, 3), dtype=np.uint8)
    for ref in (None, reference):
        out = render(img, prompt, ref)
        assert out.shape == (h, w, 3)
        assert out.dtype == np.uint8
        assert out.flags.c_contiguous
        assert out is not img
    np.testing.assert_array_equal(img, before)  # input untouched


@pytest.mark.parametrize("prompt", ALL_PROMPTS)
def test_deterministic_across_effects_and_sizes(prompt: str) -> None:
    img = _scene()
    ref = _scene(30, 40)[::-1]
    first = render(img, prompt, ref)
    render(_scene(50, 70), prompt, ref)  # other sizes in between reuse scratch buffers
    render(_scene(50, 70), prompt)
    np.testing.assert_array_equal(render(img, prompt, ref), first)
    np.testing.assert_array_equal(build_effect(prompt, ref)(img), first)


@pytest.mark.parametrize("prompt", ALL_PROMPTS)
def test_out_parameter_and_in_place(prompt: str) -> None:
    img = _scene()
    effect = build_effect(prompt, _scene(20, 20)[..., ::-1])
    expected = effect(img)
    out = np.zeros_like(img)
    assert effect(img, out=out) is out
    np.testing.assert_array_equal(out, expected)
    inplace = img.copy()
    effect(inplace, out=inplace)
    np.testing.assert_array_equal(inplace, expected)
    with pytest.raises(ValueError):
        effect(img, out=np.zeros((H, W + 1, 3), np.uint8))


def test_non_contiguous_input() -> None:
    big = _scene(H, 2 * W)
    view = big[:, ::2]
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(render(view, "neon"), render(view.copy(), "neon"))


def test_rejects_bad_frames_and_references() -> None:
    with pytest.raises(ValueError):
        render(np.zeros((4, 4), np.uint8), "anime")
    with pytest.raises(ValueError):
        render(np.zeros((4, 4, 4), np.uint8), "anime")
    with pytest.raises(ValueError):
        render(np.zeros((4, 4, 3), np.float32), "anime")
    with pytest.raises(ValueError):
        build_effect("anime", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        build_effect("anime", np.zeros((0, 4, 3), np.uint8))
    # Grey and RGBA references are accepted.
    assert build_effect("x", np.zeros((4, 4), np.uint8)).has_reference
    assert build_effect("x", np.zeros((4, 4, 4), np.uint8)).has_reference


def test_concurrent_use_from_threads_matches_serial() -> None:
    effect = build_effect("neon", _scene(16, 16))
    frames = [_scene(H + i % 3, W + 2 * (i % 2)) for i in range(12)]
    serial = [effect(f) for f in frames]
    with ThreadPoolExecutor(max_workers=3) as pool:
        parallel = list(pool.map(effect, frames * 3))
    for i, out in enumerate(parallel):
        np.testing.assert_array_equal(out, serial[i % len(frames)])


# --------------------------------------------------------------------------------------------
# Each keyword's look.


def test_passthrough_is_identity() -> None:
    img = _scene()
    for prompt in (None, "", "  "):
        effect = build_effect(prompt)
        assert effect.is_identity
        out = effect(img)
        assert out is not img
        np.testing.assert_array_equal(out, img)
    assert not build_effect("anime").is_identity
    assert not build_effect("", _scene(4, 4)).is_identity


def test_invert() -> None:
    img = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for prompt in ("invert", "Negative film"):
        np.testing.assert_array_equal(render(img, prompt), 255 - img)


def test_noir_is_grey_and_contrast_stretched() -> None:
    # A dull, low-contrast frame: every channel within 90..163, luma within ~35 levels.
    img = (_scene() // 3 + 90).astype(np.uint8)
    out = render(img, "film noir")
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 1], out[..., 2])
    grey = out[..., 0].astype(np.float64)
    luma = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert grey.std() > 3.0 * luma.std()
    assert np.percentile(grey, 1) <= 10
    assert np.percentile(grey, 99) >= 245
    # Monotonic in brightness: the cyan block (brighter) stays brighter than the red one.
    assert grey[H // 2, (CYAN_COLS[0] + CYAN_COLS[1]) // 2] > grey[H // 2, W // 3]
    assert render(img, "Black and white")[..., 0].std() == pytest.approx(grey.std())


def test_sketch_is_dark_lines_on_white() -> None:
    img = _scene()
    out = render(img, "pencil sketch")
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 1], out[..., 2])
    grey = out[..., 0]
    assert (grey >= 200).mean() > 0.85  # mostly paper
    assert grey[_flat_mask()].min() >= 215  # flat areas stay near-white
    # Every block boundary is drawn: dark strokes along each side.
    for r, c in [
        (H // 2, RED_COLS[0]),
        (H // 2, RED_COLS[1] - 1),
        (RED_ROWS[0], W // 3),
        (H // 2, CYAN_COLS[0]),
    ]:
        assert grey[r, c] < 120, (r, c, grey[r, c])
    assert grey[_edge_mask()].mean() < grey[_flat_mask()].mean() - 80


def test_anime_is_posterised_with_dark_outlines() -> None:
    img = _scene()
    out = render(img, "anime")
    for channel in range(3):
        levels = np.unique(out[..., channel])
        assert len(levels) <= 5, levels  # 4 posterised levels + black outlines
    # Flat interiors keep their (posterised) colour.
    red = out[H // 2, (RED_COLS[0] + RED_COLS[1]) // 2]
    np.testing.assert_array_equal(red, [224, 32, 32])
    np.testing.assert_array_equal(out[H // 2, (CYAN_COLS[0] + CYAN_COLS[1]) // 2], [32, 224, 224])
    assert out[_flat_mask()].max(axis=1).min() > 0  # no outlines away from edges
    # Outlines on the block boundaries.
    for r, c in [(H // 2, RED_COLS[0]), (H // 2, RED_COLS[1] - 1), (RED_ROWS[0], W // 3)]:
        np.testing.assert_array_equal(out[r, c], [0, 0, 0])
    assert (out[_edge_mask()].max(axis=1) == 0).mean() > 0.7


def test_neon_is_glowing_edges_on_dark() -> None:
    img = _scene()
    out = render(img, "neon")
    brightest = out.max(axis=2)
    assert (brightest < 64).mean() > 0.8  # mostly dark
    assert brightest[_flat_mask()].max() <= 40  # flat areas: a dim copy of the source
    assert brightest[_edge_mask()].mean() > 150  # edges glow
    for r, c in [(H // 2, RED_COLS[0]), (RED_ROWS[0], W // 3), (H // 2, CYAN_COLS[1] - 1)]:
        assert brightest[r, c] >= 180, (r, c, out[r, c])
    assert render(img, "Cyberpunk alley").tolist() == out.tolist()


def test_hue_rotation_follows_the_prompt() -> None:
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :30] = (170, 90, 80)  # muted red: no clipping whatever the rotation
    img[:, 30:] = (128, 128, 128)  # grey
    in_angle = _chroma_angle(img[0, 0].astype(np.float64))
    outputs = {}
    for prompt in ("underwater", "van gogh", "a red car", "lego"):
        out = render(img, prompt)
        outputs[prompt] = out
        colour = out[:, :30].reshape(-1, 3).mean(axis=0)
        expected = (in_angle + hue_degrees(prompt)) % 360.0
        assert _angle_diff(_chroma_angle(colour), expected) < 3.0, prompt
        # Brightness (channel sum) kept; greys stay grey.
        assert abs(colour.sum() - img[0, 0].astype(int).sum()) <= 3
        assert np.abs(out[:, 30:].astype(int) - 128).max() <= 1
        np.testing.assert_array_equal(render(img, prompt), out)  # same prompt, same output
    keys = list(outputs)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert not np.array_equal(outputs[a][:, :30], outputs[b][:, :30]), (a, b)


def test_hue_rotation_keeps_brightness_of_a_natural_scene() -> None:
    img = _scene()
    out = render(img, "a watercolour painting").astype(np.float64)
    assert abs(out.mean() - img.mean()) < 0.03 * img.mean()
    assert not np.array_equal(out, img)


# --------------------------------------------------------------------------------------------
# Reference image colour transfer.


def _blue_reference() -> Frame:
    rng = np.random.default_rng(7)
    base = np.array([30, 60, 200], np.int16)
    ref: Frame = np.clip(base + rng.integers(-25, 26, (48, 64, 3)), 0, 255).astype(np.uint8)
    return ref


def test_reference_moves_mean_colour_towards_reference() -> None:
    img = _scene()
    ref = _blue_reference()
    ref_mean = ref.reshape(-1, 3).mean(axis=0)
    in_mean = img.reshape(-1, 3).mean(axis=0)
    out = render(img, None, ref)
    out_mean = out.reshape(-1, 3).mean(axis=0)
    assert np.linalg.norm(out_mean - ref_mean) < 0.25 * np.linalg.norm(in_mean - ref_mean)
    assert out_mean[2] > in_mean[2] + 50
    # Structure survives: the blocks are still distinguishable.
    assert out[H // 2, W // 3].tolist() != out[H // 2, 3 * W // 4].tolist()
    # The reference's size does not matter, only its colours.
    big = np.repeat(np.repeat(ref, 3, axis=0), 5, axis=1)
    assert np.abs(render(img, None, big).astype(int) - out).max() <= 3


def test_reference_applies_after_the_keyword_effect() -> None:
    img = _scene()
    warm = np.zeros((10, 10, 3), np.uint8)
    warm[::2] = (240, 150, 40)
    warm[1::2] = (180, 90, 10)
    noir = render(img, "noir")
    tinted = render(img, "noir", warm)
    mean = tinted.reshape(-1, 3).mean(axis=0)
    assert mean[0] > mean[2] + 80  # warm, no longer grey
    # Still the noir picture underneath: same ordering of brightness.
    a, b = (H // 2, W // 3), (H // 2, (CYAN_COLS[0] + CYAN_COLS[1]) // 2)
    assert (int(noir[a][0]) < int(noir[b][0])) == (int(tinted[a].sum()) < int(tinted[b].sum()))
    assert build_effect("noir", warm).has_reference
    assert isinstance(build_effect("noir", warm), Effect)


def test_neon_lines_keep_their_share_of_the_picture_at_any_size() -> None:
    """A model's style does not depend on the frame size: the same scene at twice the size, seen
    at the same size (area-averaged, as a browser scales a <video> down), glows as brightly."""
    small = _scene(312, 544)
    large = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)

    def seen(frame: Frame, factor: int) -> npt.NDArray[np.float64]:
        h, w, _ = frame.shape
        cells = frame.reshape(h // factor, factor, w // factor, factor, 3).astype(np.float64)
        brightest: npt.NDArray[np.float64] = cells.mean(axis=(1, 3)).max(axis=2)
        return brightest

    at_small, at_large = seen(render(small, "neon"), 8), seen(render(large, "neon"), 16)
    small_peak, large_peak = np.percentile(at_small, 99), np.percentile(at_large, 99)
    assert small_peak > 50
    assert abs(large_peak - small_peak) < 0.2 * small_peak, (small_peak, large_peak)
    assert abs((at_large > 40).mean() - (at_small > 40).mean()) < 0.01
