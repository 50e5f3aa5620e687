"""The emulator's LiveKit room with LiveKit's browser SDK (npm ``livekit-client``) in Chromium.

The page joins with the room's token and publishes as Decart's JS SDK does (room options
``adaptiveStream:false, dynacast:false``; H.264 with simulcast, 3.5 Mbps, 30 fps), then shows the
``inference-server-*`` participant's track in a <video>. A canvas stream of one colour makes the
pixels exact; Chromium's fake camera checks the everyday path (``createLocalVideoTrack``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))

from livekit_kit import OpenRoom, close_room_blocking, open_room_blocking

import decart_widget as dw
from decart_widget.emulator._livekit.inference import PLACEHOLDER_GREY

UMD = Path(__file__).parents[2] / "js" / "node_modules" / "livekit-client" / "dist"
UMD = UMD / "livekit-client.umd.js"
WIDTH, HEIGHT = 1088, 624

_JOIN_JS = """
async ([url, token, source, codec, simulcast, width, height]) => {
  const LK = window.LivekitClient;
  const room = new LK.Room({adaptiveStream: false, dynacast: false});
  window.lkRoom = room;
  window.lkDisconnected = null;
  room.on(LK.RoomEvent.Disconnected, (reason) => { window.lkDisconnected = String(reason); });
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  document.body.appendChild(video);
  window.lkVideo = video;
  room.on(LK.RoomEvent.TrackSubscribed, (track, publication, participant) => {
    if (track.kind === 'video' && participant.identity.startsWith('inference-server-')) {
      window.lkInference = participant.identity;
      track.attach(video);
    }
  });
  await room.connect(url, token);
  let track;
  if (source === 'canvas') {
    const canvas = document.createElement('canvas');
    canvas.width = width; canvas.height = height;
    const ctx = canvas.getContext('2d');
    window.lkColour = 'rgb(200, 40, 40)';
    const paint = () => { ctx.fillStyle = window.lkColour; ctx.fillRect(0, 0, width, height); };
    paint();
    setInterval(paint, 33);
    track = new LK.LocalVideoTrack(canvas.captureStream(30).getVideoTracks()[0]);
  } else {
    track = await LK.createLocalVideoTrack({resolution: {width, height, frameRate: 30}});
  }
  window.lkLocal = track;
  window.lkLocalVideo = track.attach();
  window.lkLocalVideo.muted = true;
  document.body.appendChild(window.lkLocalVideo);
  await room.localParticipant.publishTrack(track, {
    source: LK.Track.Source.Camera, videoCodec: codec, simulcast,
    videoEncoding: {maxBitrate: 3500000, maxFramerate: 30},
  });
}
"""

_READ_JS = """
(which) => {
  const el = which === 'local' ? window.lkLocalVideo : window.lkVideo;
  if (!el || el.readyState < 2 || !el.videoWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = 64; canvas.height = 36;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(el, 0, 0, 64, 36);
  const data = ctx.getImageData(16, 9, 32, 18).data;
  let r = 0, g = 0, b = 0, spread = 0;
  for (let i = 0; i < data.length; i += 4) {
    r += data[i]; g += data[i + 1]; b += data[i + 2];
    const px = [data[i], data[i + 1], data[i + 2]];
    spread += Math.max(...px) - Math.min(...px);
  }
  const n = data.length / 4;
  return {width: el.videoWidth, height: el.videoHeight, time: el.currentTime,
          rgb: [r / n, g / n, b / n], spread: spread / n};
}
"""


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def close_to(rgb: list[float], expected: tuple[int, int, int], tol: float = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, expected, strict=True))


def poll(
    page: Any, check: Callable[[dict[str, Any]], bool], which: str = "remote"
) -> dict[str, Any]:
    """The first reading of the page's video satisfying ``check`` (20 s at most)."""
    deadline = time.monotonic() + 20
    last = None
    while time.monotonic() < deadline:
        last = page.evaluate(_READ_JS, which)
        if last is not None and check(last):
            return dict(last)
        page.wait_for_timeout(100)
    raise AssertionError(f"no matching {which} frame; last reading: {last}")


@pytest.fixture
def room_page(page: Any, emu: dw.Emulator) -> Iterator[Callable[..., OpenRoom]]:
    assert UMD.is_file(), "run `npm ci` in js/ (it installs livekit-client)"
    opened: list[OpenRoom] = []

    def join(source: str, codec: str, simulcast: bool, session: str) -> OpenRoom:
        room = open_room_blocking(emu, session, frame_size=(WIDTH, HEIGHT))
        opened.append(room)
        page.goto(f"{emu.api_url}/health")
        page.add_script_tag(path=str(UMD))
        args = [room.url, room.room.user_token(), source, codec, simulcast, WIDTH, HEIGHT]
        page.evaluate(_JOIN_JS, args)
        return room

    yield join
    page.evaluate("() => window.lkRoom && window.lkRoom.disconnect()")
    for room in opened:
        close_room_blocking(emu, room)


def test_h264_simulcast_publication_comes_back_transformed_at_full_size(
    room_page: Callable[..., OpenRoom], page: Any, emu: dw.Emulator
) -> None:
    opened = room_page("canvas", "h264", True, "browser-h264")
    opened.set_prompt("invert the colours")
    inverse = poll(page, lambda r: close_to(r["rgb"], (55, 215, 215)))
    # The full-size layer reached the room: the inference track has the published size.
    assert (inverse["width"], inverse["height"]) == (WIDTH, HEIGHT)
    assert opened.room.simulcast_layer == "f"
    assert opened.room.publisher_codec == "video/H264"
    assert opened.states == ["connected"]
    assert str(page.evaluate("() => window.lkInference")).startswith("inference-server-")

    opened.set_prompt(None)
    page.evaluate("() => { window.lkColour = 'rgb(40, 200, 40)'; }")
    poll(page, lambda r: close_to(r["rgb"], (40, 200, 40)))

    close_room_blocking(emu, opened, "session ended")
    page.wait_for_function("() => window.lkDisconnected !== null", timeout=10_000)


def test_fake_camera_with_vp8(
    room_page: Callable[..., OpenRoom], page: Any, emu: dw.Emulator
) -> None:
    opened = room_page("camera", "vp8", True, "browser-vp8")
    opened.set_prompt("film noir")
    local = poll(page, lambda r: r["spread"] > 20, which="local")  # the fake camera is colourful
    assert local["width"] == WIDTH
    wait_until(lambda: opened.states == ["connected"])

    def noir(reading: dict[str, Any]) -> bool:  # grey, and not the dark grey placeholder
        brightness = sum(reading["rgb"]) / 3
        return reading["spread"] < 6 and abs(brightness - PLACEHOLDER_GREY) > 15

    out = poll(page, noir)
    assert (out["width"], out["height"]) == (WIDTH, HEIGHT)
    assert opened.room.publisher_codec == "video/VP8"
    assert opened.states == ["connected"]
    page.evaluate("() => window.lkRoom.disconnect()")
    wait_until(lambda: opened.states == ["connected", "left"])
