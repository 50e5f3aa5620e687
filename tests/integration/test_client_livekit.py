"""RealtimeSession on Gen-B (``transport="livekit"``): the control socket, then the emulator's
LiveKit-compatible room, joined with LiveKit's own Python SDK (PyPI ``livekit``) inside the client.

Frames are checked by pixels, as in test_client.py (Gen-A): the emulator's effects are
deterministic, so "invert" on a solid colour returns its inverse and "noir" returns grey (black
for a flat frame: its contrast stretch has nothing to stretch).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
from stun_kit import StunServer
from test_client import SMALL, frame_where, mean_colour, solid, solid_frames

import decart_widget as dw
from decart_widget.client import _session as client_session
from decart_widget.protocol._session import RetryPolicy

RED = (200, 40, 40)
INVERTED = (55, 215, 215)
FAST_RETRY = RetryPolicy(delays=(0.2, 0.2, 0.2))


def inverted(frame: np.ndarray) -> bool:
    return bool(np.allclose(mean_colour(frame), INVERTED, atol=12))


@pytest.fixture
def emulator() -> Iterator[dw.Emulator]:
    with dw.Emulator(tick_seconds=0.2) as emu:
        yield emu


@pytest.fixture
async def connected(emulator: dw.Emulator) -> AsyncIterator[dw.RealtimeSession]:
    session = await dw.RealtimeSession.connect(
        model=SMALL,
        source=solid_frames(RED),
        prompt="invert",
        backend=emulator,
        transport="livekit",
    )
    yield session
    await session.disconnect()


async def test_frames_show_the_prompt_effect_and_a_new_prompt_changes_them(
    connected: dw.RealtimeSession, emulator: dw.Emulator
) -> None:
    assert connected.transport == "livekit"
    frame = await frame_where(connected, inverted)
    assert frame.dtype == np.uint8 and frame.shape == (192, 320, 3)

    await connected.set_prompt("noir film")
    grey = await frame_where(connected, lambda f: np.ptp(mean_colour(f)) < 3)
    assert abs(int(grey[..., 0].mean()) - RED[0]) > 20  # not the input: a grey of it
    assert connected.prompt == "noir film"
    record = emulator.sessions[0]
    assert (record.transport, record.prompts_applied) == ("livekit", ["invert", "noir film"])
    assert record.room_name and record.frames_received > 0 and record.offers == 0
    assert connected.session_id == record.id  # from livekit_room_info
    assert connected._media.codec == "h264"  # as Decart's Python SDK publishes


async def test_state_ticks_and_no_queue(connected: dw.RealtimeSession) -> None:
    ticks: list[int] = []
    connected.on("generation_tick", ticks.append)
    await connected.wait_for_state("generating", 10)
    await _until(lambda: len(ticks) >= 2)
    assert ticks == sorted(ticks) and all(isinstance(t, int) for t in ticks)
    assert connected.generation_seconds >= ticks[-1]
    assert (connected.queue_position, connected.queue_size) == (None, None)
    assert "transport='livekit'" in repr(connected)


async def test_an_image_steers_colour_and_set_replaces_both(
    connected: dw.RealtimeSession, emulator: dw.Emulator
) -> None:
    await connected.set_prompt("colour wash")
    before = mean_colour(await connected.next_frame())
    await connected.set_image(solid((10, 20, 230), 64, 64))
    steered = await frame_where(connected, lambda f: mean_colour(f)[2] > before[2] + 40)
    assert mean_colour(steered)[2] > mean_colour(steered)[0]
    await connected.set(prompt="invert", image=None)
    await frame_where(connected, inverted)
    record = emulator.sessions[0]
    assert record.prompts_applied[-1] == "invert" and record.images_applied[-1] is None


async def test_without_prompt_or_image_the_join_is_passthrough(emulator: dw.Emulator) -> None:
    async with await dw.RealtimeSession.connect(
        model=SMALL, source=solid_frames(RED), backend=emulator, transport="livekit"
    ) as session:
        own = await frame_where(session, lambda f: np.allclose(mean_colour(f), RED, atol=12))
        assert own.shape == (192, 320, 3)
        assert session.prompt is None
        assert emulator.sessions[0].prompts_applied == []  # nothing was sent to ack


async def test_moderation_and_bad_input_keep_the_session(
    connected: dw.RealtimeSession, emulator: dw.Emulator
) -> None:
    with pytest.raises(dw.ModerationError, match="moderation"):
        await connected.set_prompt("forbidden scene")
    with pytest.raises(dw.InvalidInput):
        await connected.set_prompt("   ")
    assert connected.prompt == "invert"
    await connected.set_prompt("noir")
    assert emulator.sessions[0].prompts_applied == ["invert", "noir"]


async def test_resolution_reaches_the_url(emulator: dw.Emulator) -> None:
    async with await dw.RealtimeSession.connect(
        model=SMALL, backend=emulator, transport="livekit", resolution="1080p"
    ) as session:
        assert session.resolution == "1080p"
        assert emulator.sessions[0].resolution == "1080p"
    with pytest.raises(dw.InvalidInput, match=r"'720p' or '1080p'.*got '4k'"):
        await dw.RealtimeSession.connect(backend=emulator, transport="livekit", resolution="4k")
    assert len(emulator.sessions) == 1  # refused before anything was opened


async def test_queue_position_is_seen_then_cleared_and_not_counted_by_the_timeout() -> None:
    with dw.Emulator(tick_seconds=0.2, room_capacity=1) as emulator:
        first = await dw.RealtimeSession.connect(model=SMALL, backend=emulator, transport="livekit")
        second = dw.RealtimeSession(
            model=SMALL, source=solid_frames(RED), prompt="invert", backend=emulator,
            transport="livekit",
        )  # fmt: skip
        places: list[Any] = []
        second.on("queue", places.append)
        timeout = 1.5
        start = asyncio.ensure_future(second.start(timeout=timeout))
        try:
            await emulator.wait_until_async(lambda: len(emulator.queued) == 1, 10)
            await _until(lambda: second.queue_position == 1)
            assert (second.queue_position, second.queue_size) == (1, 1)
            assert second.connection_state == "connecting"
            # Queued longer than the connect timeout: Decart's Python SDK would give up here.
            await asyncio.sleep(timeout + 1)
            assert not start.done()
            await first.disconnect()  # its room is free: the queue moves
            await asyncio.wait_for(start, 20)
            assert (second.queue_position, second.queue_size) == (None, None)
            assert places == [{"position": 1, "size": 1}, None]
            await frame_where(second, inverted)
            assert emulator.sessions[1].queue_positions == [1]
        finally:
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
            await first.disconnect()
            await second.disconnect()


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    """Wait for a session property (it changes on the session's own loop)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_dropped_control_socket_rejoins_and_replays_the_latest_prompt_and_image(
    emulator: dw.Emulator,
) -> None:
    session = await dw.RealtimeSession.connect(
        model=SMALL,
        source=solid_frames(RED),
        prompt="anime",
        backend=emulator,
        retry=FAST_RETRY,
        transport="livekit",
    )
    try:
        states: list[str] = []
        session.on("connection_change", states.append)
        await session.set_image(solid((0, 0, 255), 16, 16), prompt="colour wash")
        await session.set_prompt("negative")  # the latest prompt, set after the image
        first_room = emulator.sessions[0].room_name
        emulator.drop_connections()  # the control socket is aborted: the session ends its room
        await session.wait_for_state("reconnecting", 10)
        await session.wait_for_state("generating", 15)
        assert "reconnecting" in states
        assert len(emulator.sessions) == 2
        assert emulator.sessions[0].end_reason == "dropped"
        replayed = emulator.sessions[1]
        assert replayed.transport == "livekit" and replayed.room_name != first_room
        assert replayed.prompts_applied[0] == "negative"
        assert replayed.images_applied[:1] == emulator.sessions[0].images_applied[:1]
        assert replayed.images_applied[0] is not None
        assert session.prompt == "negative"
        assert session.session_id == replayed.id
        # the new room renders the replayed state: inverted, then steered toward blue
        await frame_where(
            session, lambda f: bool(mean_colour(f)[:2].max() < 30 < 200 < mean_colour(f)[2])
        )
    finally:
        await session.disconnect()


async def test_disconnect_ends_the_session_and_its_room(emulator: dw.Emulator) -> None:
    before = asyncio.all_tasks()
    session = await dw.RealtimeSession.connect(
        model=SMALL, prompt="anime", backend=emulator, transport="livekit"
    )
    await session.next_frame()
    await session.disconnect()
    await session.disconnect()  # idempotent
    await emulator.wait_until_async(lambda: emulator.sessions[0].end_reason is not None, 5)
    assert emulator.sessions[0].end_reason == "disconnect"
    assert session.connection_state == "disconnected"
    assert asyncio.all_tasks() <= before
    with pytest.raises(dw.ConnectionLost):
        await session.set_prompt("after the end")


async def test_invalid_key_fails_at_once(emulator: dw.Emulator) -> None:
    backend = dw.Decart(
        api_key="dct_wrong", api_url=emulator.api_url, realtime_url=emulator.realtime_url
    )
    with pytest.raises(dw.AuthenticationError, match=r"(?i)invalid api key"):
        await dw.RealtimeSession.connect(model=SMALL, backend=backend, transport="livekit")
    assert emulator.sessions == [] and len(emulator.rejections) == 1


async def test_concurrency_limit_is_surfaced_at_once() -> None:
    with dw.Emulator(max_concurrent_sessions=1) as emulator:
        first = await dw.RealtimeSession.connect(model=SMALL, backend=emulator, transport="livekit")
        try:
            with pytest.raises(dw.ConcurrencyLimit, match="Concurrent session limit"):
                await dw.RealtimeSession.connect(
                    model=SMALL, backend=emulator, transport="livekit", retry=FAST_RETRY
                )
        finally:
            await first.disconnect()


async def test_credits_running_out_ends_the_session_and_the_room() -> None:
    with dw.Emulator(tick_seconds=0.1, credits_seconds=2) as emulator:
        session = await dw.RealtimeSession.connect(
            model=SMALL, prompt="anime", backend=emulator, transport="livekit"
        )
        with pytest.raises(dw.InsufficientCredits):
            async for _ in session.frames():
                pass
        assert session.connection_state == "disconnected"
        # the emulator records the end once its close is done, which may be after the client saw it
        await emulator.wait_until_async(
            lambda: emulator.sessions[0].end_reason == "insufficient_credits"
        )
        await session.disconnect()


def test_without_livekit_the_extra_is_named_and_the_default_is_webrtc(
    emulator: dw.Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "livekit", None)  # as if the extra was not installed
    extra = r"pip install 'decart-widget\[livekit\]'"
    with pytest.raises(dw.MissingDependency, match=extra) as info:
        dw.RealtimeSession(backend=emulator, transport="livekit")
    assert isinstance(info.value, ImportError) and info.value.name == "livekit"
    with pytest.raises(dw.MissingDependency):  # said before the source is even looked at
        dw.RealtimeSession(backend=emulator, transport="livekit", source="no-such-clip.mp4")
    assert dw.RealtimeSession(backend=emulator).transport == "webrtc"
    assert client_session.default_transport() == "webrtc"


def test_the_default_transport_is_livekit_when_installed(emulator: dw.Emulator) -> None:
    assert dw.RealtimeSession(backend=emulator).transport == "livekit"
    with pytest.raises(dw.InvalidInput, match=r"'webrtc' or 'livekit'.*got 'sfu'"):
        dw.RealtimeSession(backend=emulator, transport="sfu")


async def test_the_rooms_v1_fallback_warnings_stay_out_of_the_users_output(
    emulator: dw.Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The emulator answers ``/rtc/v1`` with 404 and LiveKit's client falls back, warning twice;
    unfiltered, those warnings would print under every notebook cell that joins a room."""
    caplog.set_level("INFO", logger="livekit")
    session = await dw.RealtimeSession.connect(
        model=SMALL,
        source=solid_frames(RED),
        prompt="invert",
        backend=emulator,
        transport="livekit",
    )
    try:
        await frame_where(session, inverted)
    finally:
        await session.disconnect()
    livekit_lines = [r.getMessage() for r in caplog.records if r.name == "livekit"]
    assert any("/rtc" in line for line in livekit_lines), livekit_lines  # its logs do arrive
    assert not [line for line in livekit_lines if "v1 path" in line]


async def test_ice_servers_reach_the_rooms_peer_connections(emulator: dw.Emulator) -> None:
    """LiveKit's client gathers candidates from the STUN server it was given (one on loopback
    that records requests); a function is called before every join."""
    calls: list[int] = []
    with StunServer() as stun:

        def fresh() -> list[dict[str, Any]]:
            calls.append(1)
            return [{"urls": stun.url}]

        session = await dw.RealtimeSession.connect(
            model=SMALL,
            source=solid_frames(RED),
            prompt="invert",
            backend=emulator,
            transport="livekit",
            ice_servers=fresh,
        )
        try:
            await frame_where(session, inverted)
            await _until(lambda: bool(stun.requests))
        finally:
            await session.disconnect()
    assert calls == [1]
