"""`RealtimeSession.record()` against the real emulator (Gen-A, aiortc media): the files decode
with PyAV at the recording's rate and show the effect; the limits and misuse raise typed errors;
a reconnect shows as black frames in a file that stays valid.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import av
import numpy as np
import pytest

import decart_widget as dw
from decart_widget.client import _session as client_session
from decart_widget.protocol._session import RetryPolicy

SMALL = dw.RealtimeModel("lucy-2.1", 320, 192, 15)  # the real name, a small capture
RED = (200, 40, 40)
INVERTED_RED = (55, 215, 215)


def solid_frames(colour: tuple[int, int, int]) -> Iterator[np.ndarray]:
    frame = np.empty((192, 320, 3), dtype=np.uint8)
    frame[:] = colour
    while True:
        yield frame


def decode(path: Path) -> tuple[list[np.ndarray], float, list[float]]:
    """Every frame of ``path`` (RGB), the stream's average rate, and the frames' times."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time or 0.0))
        rate = float(stream.average_rate or 0)
    return frames, rate, times


def mean(frame: np.ndarray) -> np.ndarray:
    return frame.reshape(-1, 3).mean(axis=0)


@pytest.fixture(autouse=True)
def gen_a(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_session, "default_transport", lambda: "webrtc")


@pytest.fixture
def emulator() -> Iterator[dw.Emulator]:
    with dw.Emulator(tick_seconds=0.2) as emu:
        yield emu


@pytest.fixture
async def session(emulator: dw.Emulator) -> AsyncIterator[dw.RealtimeSession]:
    live = await dw.RealtimeSession.connect(
        model=SMALL,
        source=solid_frames(RED),
        prompt="invert",
        backend=emulator,
        retry=RetryPolicy(delays=(0.2, 0.2, 0.2)),
    )
    yield live
    await live.disconnect()


@pytest.mark.parametrize("name", ["out.webm", "out.mp4"])
async def test_a_timed_recording_decodes_at_its_rate_with_the_effect(
    session: dw.RealtimeSession, tmp_path: Path, name: str
) -> None:
    path = await session.record(tmp_path / name, seconds=2)
    assert path == tmp_path / name
    frames, rate, times = decode(path)
    assert rate == pytest.approx(15, abs=0.5)
    # two seconds at 15 fps from the first frame on; a tick the encoder missed may be skipped
    assert 22 <= len(frames) <= 30, len(frames)
    assert times == sorted(times) and times[-1] == pytest.approx(2, abs=0.2)
    assert frames[0].shape == (192, 320, 3)
    assert np.allclose(mean(frames[-1]), INVERTED_RED, atol=15), mean(frames[-1])


async def test_input_and_both_side_by_side(session: dw.RealtimeSession, tmp_path: Path) -> None:
    (only_input, _, _) = decode(await session.record(tmp_path / "in.webm", 1, which="input"))
    assert np.allclose(mean(only_input[-1]), RED, atol=15), mean(only_input[-1])

    both, rate, _ = decode(await session.record(tmp_path / "both.mkv", 1, which="both", fps=10))
    assert rate == pytest.approx(10, abs=0.5) and 8 <= len(both) <= 10, (rate, len(both))
    last = both[-1]
    assert last.shape == (192, 640, 3)
    assert np.allclose(mean(last[:, :300]), RED, atol=15), mean(last[:, :300])
    assert np.allclose(mean(last[:, 340:]), INVERTED_RED, atol=15), mean(last[:, 340:])


async def test_open_ended_recording_and_misuse(session: dw.RealtimeSession, tmp_path: Path) -> None:
    with pytest.raises(dw.NotRecording):
        await session.stop_recording()
    session.start_recording(tmp_path / "open.webm")
    with pytest.raises(dw.AlreadyRecording):
        session.start_recording(tmp_path / "second.webm")
    with pytest.raises(dw.AlreadyRecording):
        await session.record(tmp_path / "third.webm", seconds=1)
    await asyncio.sleep(1.2)  # the length of an open-ended take is the point here
    path = await session.stop_recording()
    frames, _, _ = decode(path)
    assert 8 <= len(frames) <= 25, len(frames)
    assert not (tmp_path / "second.webm").exists()
    with pytest.raises(dw.NotRecording):
        await session.stop_recording()

    for bad in ("out.avi", tmp_path / "missing" / "out.webm", tmp_path):
        with pytest.raises(dw.InvalidInput):
            await session.record(bad, seconds=1)
    with pytest.raises(dw.InvalidInput):
        await session.record(tmp_path / "x.webm", seconds=0)
    with pytest.raises(dw.InvalidInput):
        await session.record(tmp_path / "x.webm", which="sideways")


def noise_frames() -> Iterator[np.ndarray]:
    """Pictures no encoder can squeeze: a file of them grows fast."""
    generator = np.random.default_rng(7)
    while True:
        yield generator.integers(0, 256, (192, 320, 3), dtype=np.uint8)


async def test_the_size_limit_stops_the_recording_with_a_typed_error(
    emulator: dw.Emulator, tmp_path: Path
) -> None:
    async with await dw.RealtimeSession.connect(
        model=SMALL, source=noise_frames(), prompt="invert", backend=emulator
    ) as session:
        with pytest.raises(dw.RecordingTooLarge, match="size limit") as caught:
            await session.record(tmp_path / "big.webm", seconds=10, max_bytes=100_000)
        assert caught.value.path == tmp_path / "big.webm"
        frames, _, times = decode(tmp_path / "big.webm")  # valid up to where it stopped
        assert frames and times[-1] < 5, (len(frames), times[-1:])
        assert (tmp_path / "big.webm").stat().st_size < 300_000
        # the session goes on and records again
        frames, _, _ = decode(await session.record(tmp_path / "after.webm", seconds=1))
        assert len(frames) >= 12


async def test_a_recording_across_a_reconnect_shows_the_gap(
    session: dw.RealtimeSession, emulator: dw.Emulator, tmp_path: Path
) -> None:
    session.start_recording(tmp_path / "gap.webm")
    await asyncio.sleep(1.0)  # recorded before the drop
    emulator.drop_connections()
    await session.wait_for_state("reconnecting", 10)
    await session.wait_for_state("generating", 15)
    await session.next_frame()
    await asyncio.sleep(1.0)  # recorded after the reconnect
    frames, _, _ = decode(await session.stop_recording())
    brightness = [float(frame.mean()) for frame in frames]
    dark = [i for i, value in enumerate(brightness) if value < 10]
    assert dark, brightness  # the gap is black
    assert brightness[0] > 100 and brightness[-1] > 100, brightness  # pictures on both sides
    assert np.allclose(mean(frames[-1]), INVERTED_RED, atol=15), mean(frames[-1])


async def test_disconnecting_finishes_a_running_recording(
    emulator: dw.Emulator, tmp_path: Path
) -> None:
    session = await dw.RealtimeSession.connect(
        model=SMALL, source=solid_frames(RED), prompt="invert", backend=emulator
    )
    recording = asyncio.ensure_future(session.record(tmp_path / "cut.webm", seconds=30))
    await asyncio.sleep(1.0)
    await session.disconnect()
    with pytest.raises(dw.RecordingError, match="session ended") as caught:
        await recording
    assert caught.value.path == tmp_path / "cut.webm"
    frames, _, _ = decode(tmp_path / "cut.webm")
    assert frames
    with pytest.raises(dw.ConnectionLost):
        await session.record(tmp_path / "late.webm", seconds=1)


async def test_gen_b_records_both_sides(emulator: dw.Emulator, tmp_path: Path) -> None:
    """The same over a LiveKit room (the input is read through the same tap)."""
    pytest.importorskip("livekit.rtc")
    async with await dw.RealtimeSession.connect(
        model=SMALL,
        source=solid_frames(RED),
        prompt="invert",
        backend=emulator,
        transport="livekit",
    ) as session:
        async for frame in session.frames():  # the room's first frames may precede the effect
            if np.allclose(mean(frame), INVERTED_RED, atol=15):
                break
        both, _, _ = decode(await session.record(tmp_path / "both.webm", 1, which="both"))
    assert 12 <= len(both) <= 15, len(both)
    # the room's output may come at another size: the input is scaled to its height
    last = both[-1]
    width = last.shape[1]
    assert width > last.shape[0] * 2, last.shape
    left, right = last[:, : int(width * 0.4)], last[:, int(width * 0.6) :]
    assert np.allclose(mean(left), RED, atol=15), mean(left)
    assert np.allclose(mean(right), INVERTED_RED, atol=15), mean(right)
