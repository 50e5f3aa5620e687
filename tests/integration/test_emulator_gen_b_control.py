"""The Gen-B control channel against a real emulator: join variants, initial-state orders, early
room info, the queue, the concurrency limit, moderation and origins (no media needed: the real
room server opens each room, nobody joins it).

The tests that take the ``rooms`` fixture replace the room server by `gen_b_kit.StandInRooms`,
which opens no media, to report the room's states (``connected``, ``failed``, ``left``) exactly
when they want, including a media failure no real client can provoke on demand. Ends with the
real room and LiveKit's own client (credits, maxSessionDuration, leaving, closing the socket) are
in test_emulator_gen_b.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gen_b_kit import StandInRooms, connect, join, with_stand_in
from test_emulator_kit import StreamClient, b64, mint, png

from decart_widget.emulator import Emulator
from decart_widget.protocol.messages import LivekitRoomInfo, QueuePosition, server_message


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(tick_seconds=0.05, max_concurrent_sessions=8) as emulator:
        yield emulator


@pytest.fixture
def rooms(emu: Emulator) -> StandInRooms:
    return with_stand_in(emu)


async def _acks_settled(client: StreamClient) -> None:
    """Acks go out in order: once this prompt's ack is in, every earlier ack is too."""
    await client.send({"type": "prompt", "prompt": "settle", "enhance_prompt": False})
    await client.until(lambda: any(m.get("prompt") == "settle" for m in client.messages))


async def test_the_room_info_has_all_four_fields(emu: Emulator) -> None:
    client = await connect(emu, early=True)
    try:
        info = await join(client)
        record = emu.sessions[0]
        assert set(info) == {"type", "livekit_url", "token", "room_name", "session_id"}
        assert info["session_id"] == record.id
        assert info["livekit_url"] == emu.realtime_url
        assert isinstance(server_message(info), LivekitRoomInfo)
        await emu.wait_until_async(lambda: emu.sessions[0].room_name == info["room_name"])
        assert emu.sessions[0].transport == "livekit"
        assert client.of_type("session_id") == []  # Gen-A only
        # The token opens that room in the emulator's room server (LiveKit's validate call).
        async with httpx.AsyncClient(base_url=emu.api_url, trust_env=False) as http:
            valid = await http.get("/rtc/validate", params={"access_token": info["token"]})
        assert (valid.status_code, valid.text) == (200, "success")
    finally:
        await client.close()

    # The session is over: so is its room.
    async with httpx.AsyncClient(base_url=emu.api_url, trust_env=False) as http:
        await emu.wait_until_async(lambda: emu.sessions[0].end_reason is not None)
        gone = await http.get("/rtc/validate", params={"access_token": info["token"]})
    assert gone.status_code == 404


JOINS: list[dict[str, Any]] = [
    {},
    {"passthrough": True},
    {"passthrough": False, "client_capabilities": {"frame_timing": True}},
    {"initial_state": None},
    {"initial_state": {"type": "prompt", "prompt": "anime", "enhance_prompt": True}},
    {"initial_state": {"type": "set_image", "image_data": b64(png()), "prompt": "noir"}},
    {"passthrough": True, "initial_state": None, "client_capabilities": {}},
]


@pytest.mark.parametrize("fields", JOINS, ids=lambda f: ",".join(f) or "bare")
async def test_every_join_variant_gets_its_room(emu: Emulator, fields: dict[str, Any]) -> None:
    # passthrough:false announces a state that never comes: early room info serves it anyway.
    client = await connect(emu, early=fields.get("passthrough") is False)
    try:
        await join(client, **fields)
        await _acks_settled(client)
        state = fields.get("initial_state")
        prompts = ["settle"] if state is None or state["type"] != "prompt" else ["anime", "settle"]
        assert [a["prompt"] for a in client.of_type("prompt_ack")] == prompts
        images = 1 if state is not None and state["type"] == "set_image" else 0
        assert len(client.of_type("set_image_ack")) == images
        acks = client.of_type("prompt_ack") + client.of_type("set_image_ack")
        assert all(a["success"] for a in acks)
        if images:
            assert emu.sessions[0].prompts_applied[0] == "noir"
            assert emu.sessions[0].images_applied[0] is not None
    finally:
        await client.close()


async def test_initial_state_in_any_order_is_acked_exactly_once(emu: Emulator) -> None:
    image = b64(png())
    client = await connect(emu, early=True)
    try:
        # Before the join (some clients), right after it (JS), after the room info (Python).
        await client.send({"type": "prompt", "prompt": "before", "enhance_prompt": False})
        await client.send({"type": "livekit_join", "passthrough": False})
        await client.send({"type": "set_image", "image_data": image, "prompt": "right after"})
        await client.expect("livekit_room_info")
        await client.send({"type": "set_image", "image_data": None, "prompt": None})
        await client.send({"type": "prompt", "prompt": "after", "enhance_prompt": False})
        await _acks_settled(client)
        assert [a["prompt"] for a in client.of_type("prompt_ack")] == ["before", "after", "settle"]
        assert len(client.of_type("set_image_ack")) == 2
        assert len(client.of_type("livekit_room_info")) == 1
        assert emu.sessions[0].images_applied[-1] is None
    finally:
        await client.close()


async def test_room_info_waits_for_an_announced_state_unless_early(emu: Emulator) -> None:
    late = await connect(emu)
    try:
        await late.send({"type": "livekit_join", "passthrough": False})
        await late.send({"type": "offer", "sdp": "v=0"})  # a round trip: refused, Gen-B chosen
        await late.expect("error")
        assert late.of_type("livekit_room_info") == []
        assert (await late.prompt("anime"))["success"] is True
        await late.expect("livekit_room_info")
        kinds = [m["type"] for m in late.messages]
        assert kinds.index("prompt_ack") < kinds.index("livekit_room_info")
    finally:
        await late.close()

    early = await connect(emu, early=True)
    try:
        await join(early, passthrough=False)  # Python's order: room info first, state after
        assert early.of_type("prompt_ack") == []
    finally:
        await early.close()


async def test_the_other_transport_is_refused_on_the_same_socket(emu: Emulator) -> None:
    gen_b = await connect(emu, early=True)
    gen_a = await StreamClient.connect(emu)
    try:
        await join(gen_b)
        await gen_b.send({"type": "livekit_join"})
        assert "already joined" in (await gen_b.expect("error"))["error"]
        await gen_b.send({"type": "offer", "sdp": "v=0\r\n"})
        assert "uses LiveKit" in (await gen_b.expect("error"))["error"]
        assert len(gen_b.of_type("livekit_room_info")) == 1

        await gen_a.offer()
        await gen_a.send({"type": "livekit_join"})
        assert "uses WebRTC" in (await gen_a.expect("error"))["error"]
        assert (await gen_a.prompt("still fine"))["success"] is True
        transports = {r.id: r.transport for r in emu.sessions}
        assert sorted(transports.values(), key=str) == ["livekit", "webrtc"]
        assert all(r.live for r in emu.sessions)
    finally:
        await gen_b.close()
        await gen_a.close()


async def test_connected_starts_generation_and_ending_closes_the_room(
    emu: Emulator, rooms: StandInRooms
) -> None:
    client = await connect(emu, early=True)
    await join(client)
    session_id = emu.sessions[0].id
    room = rooms.rooms[session_id]
    assert client.of_type("generation_started") == []
    room.report("connected")
    await client.expect("generation_started")
    ticks = [await client.expect("generation_tick") for _ in range(2)]
    assert [t["seconds"] for t in ticks] == [1, 2]
    await client.close()
    await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "disconnect")
    assert room.closed is not None


@pytest.mark.parametrize(
    ("state", "ended", "close", "record"),
    [
        ("failed", "error", (1011, "peer connection failed"), "error"),
        ("left", "disconnect", (1000, "left the room"), "left_room"),
    ],
)
async def test_room_failure_and_leaving_end_the_session(
    emu: Emulator,
    rooms: StandInRooms,
    state: str,
    ended: str,
    close: tuple[int, str],
    record: str,
) -> None:
    client = await connect(emu, early=True)
    try:
        await join(client)
        room = rooms.rooms[emu.sessions[0].id]
        room.report("connected")
        await client.expect("generation_tick")
        room.report(state)
        assert (await client.expect("generation_ended"))["reason"] == ended
        assert await client.wait_closed() == close
        await emu.wait_until_async(lambda: emu.sessions[0].end_reason == record)
        assert room.closed is not None
    finally:
        await client.close()


async def test_moderation_and_origins_apply_to_gen_b(emu: Emulator) -> None:
    token = await mint(emu, allowedOrigins=["http://localhost:8888"])
    refused = await connect(emu, early=True, api_key=token, origin="http://evil.example")
    try:
        assert (await refused.wait_closed())[0] == 4003
    finally:
        await refused.close()

    client = await connect(emu, early=True, api_key=token, origin="http://localhost:8888")
    try:
        await client.send(
            {"type": "livekit_join", "initial_state": {"type": "prompt", "prompt": "forbidden"}}
        )
        ack = await client.expect("prompt_ack")
        assert (ack["prompt"], ack["success"]) == ("forbidden", False)
        await client.expect("livekit_room_info")
        assert emu.sessions[-1].rejected == [("prompt", ack["error"])]
    finally:
        await client.close()


async def test_the_queue_moves_up_as_sessions_end(emu: Emulator) -> None:
    emu.set_room_capacity(1)
    first, second, third = [await connect(emu, early=True) for _ in range(3)]
    try:
        await join(first)
        await second.send({"type": "livekit_join"})
        position = await second.expect("queue_position")
        assert position == {
            "type": "queue_position",
            "position": 1,
            "queue_size": 1,
            "queue_position": 1,
        }
        assert isinstance(server_message(position), QueuePosition)
        await third.send({"type": "livekit_join"})
        assert (await third.expect("queue_position"))["position"] == 2
        update = await second.expect("queue_position")  # one more behind it
        assert (update["position"], update["queue_size"]) == (1, 2)
        ids = [r.id for r in emu.sessions]
        assert emu.queued == ids[1:]
        assert second.of_type("livekit_room_info") == []

        await first.close()  # a session ends: the line moves up
        await second.expect("livekit_room_info")
        update = await third.expect("queue_position")
        assert (update["position"], update["queue_size"]) == (1, 1)
        assert emu.queued == ids[2:]

        emu.set_room_capacity(None)  # capacity frees: nobody waits
        await third.expect("livekit_room_info")
        assert emu.queued == []
        assert [r.queue_positions for r in emu.sessions] == [[], [1, 1], [2, 1]]
    finally:
        for client in (first, second, third):
            await client.close()


async def test_capacity_zero_holds_every_session(emu: Emulator) -> None:
    emu.set_room_capacity(0)
    client = await connect(emu, early=True)
    try:
        await client.send({"type": "livekit_join", "passthrough": True})
        assert (await client.expect("queue_position"))["position"] == 1
        # Waiting in line, the session still takes prompts.
        assert (await client.prompt("anime"))["success"] is True
        emu.set_room_capacity(1)
        await client.expect("livekit_room_info")
        await client.close()
        await emu.wait_until_async(lambda: not emu.sessions[0].live)
        # Its room is given back: the next session gets it at once.
        again = await connect(emu, early=True)
        await join(again)
        assert again.of_type("queue_position") == []
        await again.close()
    finally:
        await client.close()


async def test_queued_sessions_count_for_the_concurrency_limit() -> None:
    with Emulator(max_concurrent_sessions=2, room_capacity=0) as emu:
        gen_b = await connect(emu, early=True)
        gen_a = await StreamClient.connect(emu)
        third = await connect(emu, early=True)
        try:
            await gen_b.send({"type": "livekit_join"})
            await gen_b.expect("queue_position")
            assert await third.wait_closed() == (1013, "Concurrent session limit reached.")
            await gen_a.offer()
            await gen_a.frame()  # Gen-A media flows beside the waiting Gen-B session
        finally:
            for client in (gen_b, gen_a, third):
                await client.close()


async def test_without_a_room_server_the_join_gets_an_error(emu: Emulator) -> None:
    emu._services.rooms = None
    client = await connect(emu, early=True)
    try:
        await client.send({"type": "livekit_join"})
        assert "no LiveKit room server" in (await client.expect("error"))["error"]
        assert (await client.prompt("still open"))["success"] is True
    finally:
        await client.close()


async def test_an_image_ref_is_refused_and_the_state_kept(emu: Emulator) -> None:
    client = await connect(emu)
    try:
        assert (await client.prompt("anime"))["success"] is True
        # The JS SDK's Files API reference: one failed ack, the prompt stays.
        await client.send({"type": "set_image", "image_ref": "file_123", "prompt": "noir"})
        ack = await client.expect("set_image_ack")
        assert ack["success"] is False and "image_ref" in ack["error"]
        await join(client, passthrough=False)
        record = emu.sessions[0]
        assert (record.prompts_applied, record.images_applied) == (["anime"], [])
    finally:
        await client.close()
