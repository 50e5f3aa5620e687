"""A Gen-B (LiveKit) client through the proxy: control traffic passes, the ledger keeps the
session id of ``livekit_room_info``, and the Python SDK's ``livekit_early_room_info`` reaches the
upstream. The media goes straight to the emulator's room (LiveKit's Python client), as it goes
to Decart's LiveKit servers, not through the proxy."""

from __future__ import annotations

from gen_b_kit import LiveKitUser
from proxy_kit import ProxyFactory, connect, receive_type, wait_for
from test_emulator_kit import StreamClient, centre, close_to

from decart_widget.emulator import Emulator


async def test_a_gen_b_session_through_the_proxy(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    url = proxy.stream_url(proxy.issue_token("alice")) + "&livekit_early_room_info=true"
    client = StreamClient(await connect(url))
    user = LiveKitUser((200, 40, 40))
    try:
        # passthrough:false and no state yet: only the early flag lets the room info come now.
        await client.send({"type": "livekit_join", "passthrough": False})
        info = await client.expect("livekit_room_info")
        record = emulator.sessions[-1]
        assert (record.transport, record.key_kind) == ("livekit", "permanent")
        assert info["session_id"] == record.id
        assert info["livekit_url"] == emulator.realtime_url  # the room is the emulator's own
        await user.join(info)
        assert (await client.prompt("invert"))["success"] is True
        await user.frame_where(lambda p: close_to(centre(p), (55, 215, 215)))
        ticks = [await client.expect("generation_tick") for _ in range(2)]
        assert [t["seconds"] for t in ticks] == [1, 2]
    finally:
        await client.close()
    await user.disconnected.wait()  # the proxy closed the upstream: the session and its room end
    await user.leave()

    await wait_for(lambda: emulator.sessions[-1].end_reason is not None, what="upstream end")
    [row] = await proxy.ledger.sessions("alice")
    assert row.upstream_session_id == info["session_id"]
    assert row.seconds >= 2


async def test_without_the_early_flag_room_info_waits_for_the_state(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    async with await connect(proxy.stream_url(proxy.issue_token("bob"))) as ws:
        await ws.send('{"type":"livekit_join","passthrough":false}')
        await ws.send('{"type":"prompt","prompt":"noir","enhance_prompt":false}')
        ack = await receive_type(ws, "prompt_ack")
        info = await receive_type(ws, "livekit_room_info")  # after the ack: it waited
        assert ack["prompt"] == "noir"
        assert info["session_id"] == emulator.sessions[-1].id
