"""RealtimeSession on Gen-A (``transport="webrtc"``) against the real emulator on loopback, with
real aiortc media.

Frames are checked by pixels: the emulator's effects are deterministic, so "invert" on a solid
colour returns its inverse and "noir" returns grey.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import decart_widget as dw
from decart_widget.client import _session as client_session
from decart_widget.images import encode_png
from decart_widget.protocol._session import RetryPolicy

FAST_RETRY = RetryPolicy(delays=(0.2, 0.2, 0.2))
SMALL = dw.RealtimeModel("lucy-2.1", 320, 192, 15)  # the real name, a small capture


def solid(colour: tuple[int, int, int], width: int = 320, height: int = 192) -> np.ndarray:
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = colour
    return frame


def solid_frames(colour: tuple[int, int, int]) -> Iterator[np.ndarray]:
    frame = solid(colour)
    while True:
        yield frame


async def frame_where(
    session: dw.RealtimeSession, predicate: Callable[[np.ndarray], bool], timeout: float = 10.0
) -> np.ndarray:
    """The first frame that satisfies ``predicate`` (frames in flight may predate a change)."""

    async def scan() -> np.ndarray:
        async for frame in session.frames():
            if predicate(frame):
                return frame
        raise AssertionError("the session ended before a matching frame arrived")

    return await asyncio.wait_for(scan(), timeout)


def mean_colour(frame: np.ndarray) -> np.ndarray:
    return frame.reshape(-1, 3).mean(axis=0)


@pytest.fixture(autouse=True)
def gen_a(monkeypatch: pytest.MonkeyPatch) -> None:
    """These are Gen-A's tests (test_client_livekit.py has Gen-B's): no transport means WebRTC."""
    monkeypatch.setattr(client_session, "default_transport", lambda: "webrtc")


@pytest.fixture
def emulator() -> Iterator[dw.Emulator]:
    with dw.Emulator(tick_seconds=0.2) as emu:
        yield emu


@pytest.fixture
async def connected(emulator: dw.Emulator) -> AsyncIterator[dw.RealtimeSession]:
    session = await dw.RealtimeSession.connect(
        model=SMALL, source=solid_frames((200, 40, 40)), prompt="invert", backend=emulator
    )
    yield session
    await session.disconnect()


async def test_frames_show_the_prompt_effect_and_a_new_prompt_changes_them(
    connected: dw.RealtimeSession, emulator: dw.Emulator
) -> None:
    inverted = await frame_where(
        connected, lambda f: np.allclose(mean_colour(f), (55, 215, 215), atol=12)
    )
    assert inverted.dtype == np.uint8 and inverted.shape == (192, 320, 3)

    await connected.set_prompt("noir film")
    grey = await frame_where(connected, lambda f: np.ptp(mean_colour(f)) < 3)
    assert abs(int(grey[..., 0].mean()) - 200) > 20  # not the input: a grey of it
    assert connected.prompt == "noir film"
    assert emulator.sessions[0].prompts_applied == ["invert", "noir film"]


async def test_state_session_id_and_ticks_update(connected: dw.RealtimeSession) -> None:
    ticks: list[int] = []
    connected.on("generation_tick", ticks.append)
    await connected.wait_for_state("generating", 10)
    assert connected.session_id and connected.session_id.startswith("emu_")
    for _ in range(50):
        if len(ticks) >= 2:
            break
        await asyncio.sleep(0.1)
    assert len(ticks) >= 2 and ticks == sorted(ticks) and all(isinstance(t, int) for t in ticks)
    assert connected.generation_seconds == ticks[-1]


async def test_reference_image_reaches_the_server_and_steers_colour(
    connected: dw.RealtimeSession, emulator: dw.Emulator
) -> None:
    blue = encode_png(solid((10, 20, 230), 64, 64))
    await connected.set_prompt("colour wash")
    before = mean_colour(await connected.next_frame())
    await connected.set_image(blue)
    steered = await frame_where(connected, lambda f: mean_colour(f)[2] > before[2] + 40)
    assert mean_colour(steered)[2] > mean_colour(steered)[0]
    record = emulator.sessions[0]
    assert len(record.images_applied) == 1 and record.images_applied[0] is not None

    await connected.set_image(None)
    emulator.wait_until(lambda: len(emulator.sessions[0].images_applied) == 2, 5)
    assert emulator.sessions[0].images_applied[-1] is None


async def test_set_replaces_prompt_and_image_together(
    connected: dw.RealtimeSession, emulator: dw.Emulator
) -> None:
    await connected.set(prompt="sketch", image=solid((0, 255, 0), 32, 32))
    record = emulator.sessions[0]
    assert record.prompts_applied[-1] == "sketch"
    assert record.images_applied[-1] is not None


async def test_moderation_rejects_and_keeps_the_previous_prompt(
    connected: dw.RealtimeSession,
) -> None:
    with pytest.raises(dw.ModerationError, match="moderation"):
        await connected.set_prompt("forbidden scene")
    assert connected.prompt == "invert"
    # The session carries on: a later prompt still applies.
    await connected.set_prompt("noir")
    assert connected.prompt == "noir"


@pytest.mark.parametrize("prompt", ["", "   ", 42])
async def test_bad_prompts_are_refused_before_sending(
    connected: dw.RealtimeSession, emulator: dw.Emulator, prompt: object
) -> None:
    with pytest.raises(dw.InvalidInput):
        await connected.set_prompt(prompt)  # type: ignore[arg-type]
    assert emulator.sessions[0].prompts_applied == ["invert"]


async def test_bad_images_are_refused_before_sending(
    connected: dw.RealtimeSession, tmp_path: Path
) -> None:
    with pytest.raises(dw.InvalidInput, match="not a PNG"):
        await connected.set_image(b"this is not an image")
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(11 * 1024 * 1024))
    with pytest.raises(dw.InvalidInput, match="limit"):
        await connected.set_image(huge)
    with pytest.raises(dw.InvalidInput, match="not found"):
        await connected.set_image(tmp_path / "missing.png")


async def test_disconnect_ends_the_server_session_and_leaves_no_task(
    emulator: dw.Emulator,
) -> None:
    before = asyncio.all_tasks()
    session = await dw.RealtimeSession.connect(model=SMALL, prompt="anime", backend=emulator)
    await session.next_frame()
    await session.disconnect()
    await session.disconnect()  # idempotent
    await emulator.wait_until_async(lambda: emulator.sessions[0].end_reason is not None, 2)
    assert emulator.sessions[0].end_reason == "disconnect"
    assert session.connection_state == "disconnected"
    assert asyncio.all_tasks() <= before
    with pytest.raises(dw.ConnectionLost):
        await session.set_prompt("after the end")


async def test_numpy_async_generator_source(emulator: dw.Emulator) -> None:
    async def frames() -> AsyncIterator[np.ndarray]:
        while True:
            yield solid((30, 60, 90))
            await asyncio.sleep(0)

    async with await dw.RealtimeSession.connect(
        model=SMALL, source=frames(), prompt="negative", backend=emulator
    ) as session:
        await frame_where(session, lambda f: np.allclose(mean_colour(f), (225, 195, 165), atol=12))


async def test_video_file_source(emulator: dw.Emulator, tmp_path: Path) -> None:
    import av

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=15)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for _ in range(15):
            frame = av.VideoFrame.from_ndarray(solid((250, 250, 250), 160, 96), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    async with await dw.RealtimeSession.connect(
        model=SMALL, source=path, prompt="invert", backend=emulator
    ) as session:
        dark = await frame_where(session, lambda f: mean_colour(f).max() < 40)
        assert dark.shape == (96, 160, 3)


async def test_bad_sources_are_refused(emulator: dw.Emulator, tmp_path: Path) -> None:
    with pytest.raises(dw.InvalidInput, match="not found"):
        await dw.RealtimeSession.connect(source=tmp_path / "none.mp4", backend=emulator)
    with pytest.raises(dw.InvalidInput, match="single frame"):
        await dw.RealtimeSession.connect(source=solid((0, 0, 0)), backend=emulator)
    with pytest.raises(dw.InvalidInput, match="source must be"):
        await dw.RealtimeSession.connect(source=12, backend=emulator)  # type: ignore[arg-type]


async def test_invalid_key_fails_at_once_without_retrying(emulator: dw.Emulator) -> None:
    backend = dw.Decart(
        api_key="dct_wrong", api_url=emulator.api_url, realtime_url=emulator.realtime_url
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(dw.AuthenticationError, match=r"(?i)invalid api key"):
        await dw.RealtimeSession.connect(model=SMALL, backend=backend)
    assert loop.time() - started < 5  # no backoff ladder (1+2+4+8+10 s) was walked
    assert len(emulator.rejections) == 1
    assert emulator.sessions == []


async def test_expired_client_token_is_refused(emulator: dw.Emulator) -> None:
    token = await dw.TokenMinter(emulator).amint(expires_in=30)
    emulator.advance_time(31)
    backend = dw.Decart(
        api_key=token.api_key, api_url=emulator.api_url, realtime_url=emulator.realtime_url
    )
    with pytest.raises(dw.AuthenticationError, match=r"(?i)expired"):
        await dw.RealtimeSession.connect(model=SMALL, backend=backend)


async def test_model_not_allowed_by_the_token(emulator: dw.Emulator) -> None:
    token = await dw.TokenMinter(emulator).amint(allowed_models=["lucy-2.5"])
    backend = dw.Decart(
        api_key=token.api_key, api_url=emulator.api_url, realtime_url=emulator.realtime_url
    )
    with pytest.raises(dw.AuthenticationError, match=r"(?i)not allowed"):
        await dw.RealtimeSession.connect(model=SMALL, backend=backend)


async def test_unknown_model_is_invalid_input(emulator: dw.Emulator) -> None:
    with pytest.raises(dw.InvalidInput, match=r"(?i)model"):
        await dw.RealtimeSession.connect(
            model=dw.RealtimeModel("lucy-99", 320, 192, 15), backend=emulator
        )
    with pytest.raises(dw.InvalidInput, match="unknown model"):
        await dw.RealtimeSession.connect(model="lucy-99", backend=emulator)


async def test_concurrency_limit_is_surfaced_at_once() -> None:
    with dw.Emulator(max_concurrent_sessions=1) as emulator:
        first = await dw.RealtimeSession.connect(model=SMALL, backend=emulator)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(dw.ConcurrencyLimit, match="Concurrent session limit"):
                await dw.RealtimeSession.connect(model=SMALL, backend=emulator)
            assert loop.time() - started < 5
        finally:
            await first.disconnect()


async def test_credits_running_out_ends_the_session_with_a_typed_error() -> None:
    with dw.Emulator(tick_seconds=0.1, credits_seconds=2) as emulator:
        session = await dw.RealtimeSession.connect(model=SMALL, prompt="anime", backend=emulator)
        errors: list[dw.DecartError] = []
        session.on("error", errors.append)
        with pytest.raises(dw.InsufficientCredits):
            async for _ in session.frames():
                pass
        assert session.connection_state == "disconnected"
        assert isinstance(errors[-1], dw.InsufficientCredits)
        await emulator.wait_until_async(lambda: emulator.sessions[0].end_reason is not None, 5)
        assert emulator.sessions[0].end_reason == "insufficient_credits"
        await session.disconnect()


async def test_session_time_limit_ends_with_session_ended(emulator: dw.Emulator) -> None:
    token = await dw.TokenMinter(emulator).amint(max_session_duration=1)
    backend = dw.Decart(
        api_key=token.api_key, api_url=emulator.api_url, realtime_url=emulator.realtime_url
    )
    session = await dw.RealtimeSession.connect(model=SMALL, backend=backend)
    with pytest.raises(dw.SessionEnded) as info:
        async for _ in session.frames():
            pass
    assert info.value.reason == "timeout"
    await session.disconnect()


async def test_dropped_socket_reconnects_and_replays_the_latest_prompt_and_image(
    emulator: dw.Emulator,
) -> None:
    session = await dw.RealtimeSession.connect(
        model=SMALL,
        source=solid_frames((200, 40, 40)),
        prompt="anime",
        backend=emulator,
        retry=FAST_RETRY,
    )
    try:
        states: list[str] = []
        session.on("connection_change", states.append)
        await session.set_image(solid((0, 0, 255), 16, 16), prompt="colour wash")
        await session.set_prompt("negative")  # the latest prompt, set after the image
        emulator.drop_connections()  # the server aborts the socket (the client sees 1006)
        await session.wait_for_state("reconnecting", 10)
        await session.wait_for_state("generating", 15)
        assert "reconnecting" in states
        assert len(emulator.sessions) == 2
        assert emulator.sessions[0].end_reason == "dropped"
        replayed = emulator.sessions[1]
        assert replayed.prompts_applied[0] == "negative"
        assert replayed.images_applied[:1] == emulator.sessions[0].images_applied[:1]
        assert replayed.images_applied[0] is not None
        assert session.prompt == "negative"
        # the replayed state is what the new server session renders
        await frame_where(
            session, lambda f: bool(mean_colour(f)[:2].max() < 30 < 200 < mean_colour(f)[2])
        )
    finally:
        await session.disconnect()


async def test_a_prompt_set_while_reconnecting_is_applied_after_the_reconnect(
    emulator: dw.Emulator,
) -> None:
    session = await dw.RealtimeSession.connect(
        model=SMALL, prompt="anime", backend=emulator, retry=RetryPolicy(delays=(0.5,))
    )
    try:
        emulator.drop_connections()
        await session.wait_for_state("reconnecting", 10)
        await session.set_prompt("noir")  # settles with the replay's ack
        assert session.prompt == "noir"
        assert emulator.sessions[-1].prompts_applied[0] == "noir"
    finally:
        await session.disconnect()


async def test_offer_refused_gives_up_with_connection_lost(emulator: dw.Emulator) -> None:
    emulator.faults.refuse_offers = True
    with pytest.raises(dw.ConnectionLost, match="could not connect after 4 attempts"):
        await dw.RealtimeSession.connect(model=SMALL, backend=emulator, retry=FAST_RETRY)
    assert len(emulator.sessions) == 1 + len(FAST_RETRY.delays)


async def test_dropped_acks_time_out(emulator: dw.Emulator) -> None:
    session = await dw.RealtimeSession(
        model=SMALL, backend=emulator, prompt="anime", prompt_ack_timeout=0.5
    ).__aenter__()
    try:
        emulator.faults.drop_acks = True
        with pytest.raises(dw.AckTimeout):
            await session.set_prompt("noir")
    finally:
        await session.disconnect()
