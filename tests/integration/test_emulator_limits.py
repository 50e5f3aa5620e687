"""Generation accounting: integer cumulative ticks, per-key credits (insufficient_credits) and the
client token's maxSessionDuration (timeout). One tick = one generation second of tick_seconds."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from test_emulator_kit import StreamClient, mint

from decart_widget.emulator import Emulator
from decart_widget.protocol._errors import InsufficientCredits, classify
from decart_widget.protocol.messages import GenerationEnded, GenerationTick, parse_server


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(tick_seconds=0.1) as emulator:
        yield emulator


async def _generate(client: StreamClient) -> None:
    await client.prompt("anime")
    await client.offer()
    await client.expect("generation_started")


async def test_credits_run_out_with_insufficient_credits(emu: Emulator) -> None:
    emu.set_credits(emu.api_key, 3)
    client = await StreamClient.connect(emu)
    try:
        await _generate(client)
        ended = await client.expect("generation_ended")
        assert ended == {
            "type": "generation_ended",
            "seconds": 3,
            "reason": "insufficient_credits",
        }
        assert [m["seconds"] for m in client.of_type("generation_tick")] == [1, 2, 3]
        assert await client.wait_closed() == (1000, "insufficient_credits")
        assert emu.credits() == 0
        await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "insufficient_credits")
        assert emu.sessions[0].generation_seconds == 3
    finally:
        await client.close()

    # No credits left: the next session ends at once, before any generation.
    again = await StreamClient.connect(emu)
    try:
        ended = await again.expect("generation_ended")
        assert (ended["seconds"], ended["reason"]) == (0, "insufficient_credits")
        assert isinstance(classify(ended["reason"]), InsufficientCredits)
        assert (await again.wait_closed())[0] == 1000
    finally:
        await again.close()


async def test_client_tokens_spend_their_key_credits(emu: Emulator) -> None:
    emu.set_credits(emu.api_key, 2)
    client = await StreamClient.connect(emu, api_key=await mint(emu))
    try:
        await _generate(client)
        assert (await client.expect("generation_ended"))["reason"] == "insufficient_credits"
    finally:
        await client.close()
    async with httpx.AsyncClient(base_url=emu.api_url, trust_env=False) as http:
        quota = await http.get("/v1/realtime/quota", headers={"X-API-KEY": emu.api_key})
    assert quota.json()["credits_seconds_remaining"] == 0


async def test_max_session_duration_ends_with_timeout(emu: Emulator) -> None:
    token = await mint(emu, constraints={"realtime": {"maxSessionDuration": 2}})
    client = await StreamClient.connect(emu, api_key=token)
    try:
        await _generate(client)
        ended = await client.expect("generation_ended")
        assert ended == {"type": "generation_ended", "seconds": 2, "reason": "timeout"}
        assert await client.wait_closed() == (1000, "session_duration_limit")
        await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "timeout")
    finally:
        await client.close()


async def test_ticks_are_whole_cumulative_seconds(emu: Emulator) -> None:
    client = await StreamClient.connect(emu)
    try:
        await _generate(client)
        await client.until(lambda: len(client.of_type("generation_tick")) >= 5)
        ticks = client.of_type("generation_tick")[:5]
        assert [t["seconds"] for t in ticks] == [1, 2, 3, 4, 5]
        assert all(type(t["seconds"]) is int for t in ticks)
        assert all(isinstance(parse_server(_dump(t)), GenerationTick) for t in ticks)
        assert all(set(t) == {"type", "seconds"} for t in ticks)
    finally:
        await client.close()
    assert not client.of_type("generation_ended")  # a client disconnect sends nothing more


def _dump(message: dict[str, object]) -> str:
    import json

    return json.dumps(message)


def test_generation_ended_parses_with_the_core() -> None:
    raw = '{"type":"generation_ended","seconds":3,"reason":"insufficient_credits"}'
    assert parse_server(raw) == GenerationEnded(seconds=3, reason="insufficient_credits")
