"""The front end's size budget: ``widget.js``, which every notebook loads, stays under 60 KB
minified; the media transports are assets the page asks the kernel for when a session needs one
(decart_widget/widget/_assets.py)."""

from __future__ import annotations

import pytest

from decart_widget.widget._assets import ASSETS
from decart_widget.widget._widget import STATIC

#: 60 KB as esbuild prints sizes and as every figure in bench/README.md and the docs counts them
#: (1 KB = 1,024 bytes).
BUDGET_BYTES = 60 * 1024


def _built(name: str) -> bytes:
    path = STATIC / name
    if not path.is_file():
        pytest.skip(f"{path} is not built (bash scripts/setup.sh)")
    data = path.read_bytes()
    if b"sourceMappingURL=data:" in data:
        pytest.skip("a development build (npm run dev): not minified")
    return data


def test_the_initial_bundle_stays_under_its_budget() -> None:
    bundle = _built("widget.js")
    assert len(bundle) < BUDGET_BYTES, f"widget.js is {len(bundle):,} bytes"
    # neither media transport is in it: livekit-client's and the peer's code are assets
    assert b"inference-server-" not in bundle and b"setCodecPreferences" not in bundle
    assert b"getDisplayMedia" not in bundle  # the screen and video-file sources are an asset


def test_every_media_transport_is_an_asset_of_its_own() -> None:
    # frames: w.snapshot()'s capture; sources: the screen and video-file sources
    assert set(ASSETS) == {"webrtc", "livekit", "frames", "sources"}
    assert b"frame_request" in _built(ASSETS["frames"])
    assert b"getDisplayMedia" in _built(ASSETS["sources"])
    assert b"setCodecPreferences" in _built(ASSETS["webrtc"])
    livekit = _built(ASSETS["livekit"])
    assert b"inference-server-" in livekit and b"adaptiveStream" in livekit
