"""Gen-B end to end: the control WebSocket, then the emulator's room with LiveKit's own Python
client (PyPI ``livekit``) publishing numpy frames and reading the ``inference-server-*`` track.
Pixels are checked: the prompt sent on the control socket changes them; every end of the session
disconnects the user from the room. (The control channel alone: test_emulator_gen_b_control.py.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gen_b_kit import LiveKitUser, connect, join
from test_emulator_kit import ColorTrack, StreamClient, centre, close_to, mint

from decart_widget.emulator import Emulator

RED = (200, 40, 40)
INVERTED = (55, 215, 215)
GREEN = (40, 200, 40)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(tick_seconds=0.1) as emulator:
        yield emulator


async def test_a_livekit_client_gets_transformed_video(emu: Emulator) -> None:
    client = await connect(emu, early=True)
    user = LiveKitUser(RED)
    try:
        info = await join(client)
        await user.join(info)
        # Passthrough until a prompt: the user's own colour comes back.
        await user.frame_where(lambda p: close_to(centre(p), RED))
        assert user.inference_identity is not None
        await client.expect("generation_started")
        assert (await client.expect("generation_tick"))["seconds"] == 1

        assert (await client.prompt("invert"))["success"] is True
        await user.frame_where(lambda p: close_to(centre(p), INVERTED))
        user.color = GREEN  # the effect follows the input
        await user.frame_where(lambda p: close_to(centre(p), (215, 55, 215)))

        record = emu.sessions[0]
        assert (record.transport, record.room_name) == ("livekit", info["room_name"])
        assert record.frames_received > 0 and record.frames_sent > 0
        assert client.of_type("session_id") == []
    finally:
        await client.close()
    # The session ended with the control socket: the room is closed under the user.
    await user.disconnected.wait()
    await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "disconnect")
    await user.leave()


async def test_max_session_duration_ends_the_session_and_the_room(emu: Emulator) -> None:
    token = await mint(emu, constraints={"realtime": {"maxSessionDuration": 2}})
    client = await connect(emu, early=True, api_key=token)
    user = LiveKitUser()
    try:
        await user.join(await join(client, passthrough=True))
        ended = await client.expect("generation_ended")
        assert (ended["seconds"], ended["reason"]) == (2, "timeout")
        assert await client.wait_closed() == (1000, "session_duration_limit")
        await user.disconnected.wait()
    finally:
        await user.leave()
        await client.close()


async def test_credits_end_the_session_and_the_room(emu: Emulator) -> None:
    emu.set_credits(emu.api_key, 2)
    client = await connect(emu, early=True)
    user = LiveKitUser()
    try:
        await user.join(await join(client))
        ended = await client.expect("generation_ended")
        assert (ended["seconds"], ended["reason"]) == (2, "insufficient_credits")
        await user.disconnected.wait()
        await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "insufficient_credits")
    finally:
        await user.leave()
        await client.close()


async def test_leaving_the_room_ends_the_session(emu: Emulator) -> None:
    client = await connect(emu, early=True)
    user = LiveKitUser()
    try:
        await user.join(await join(client))
        await client.expect("generation_started")
        await user.leave()
        assert (await client.expect("generation_ended"))["reason"] == "disconnect"
        assert await client.wait_closed() == (1000, "left the room")
    finally:
        await client.close()


async def test_gen_a_and_gen_b_sessions_side_by_side(emu: Emulator) -> None:
    gen_b = await connect(emu, early=True)
    gen_a = await StreamClient.connect(emu)
    user = LiveKitUser(RED)
    try:
        await user.join(await join(gen_b))
        await gen_b.prompt("invert")
        await gen_a.offer(ColorTrack(GREEN))  # no prompt: its own colour comes back
        await user.frame_where(lambda p: close_to(centre(p), INVERTED))
        await gen_a.frame_where(lambda p: close_to(centre(p), GREEN))
        assert {r.transport for r in emu.sessions} == {"webrtc", "livekit"}
    finally:
        await user.leave()
        await gen_a.close()
        await gen_b.close()
