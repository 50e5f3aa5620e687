"""Fault injection: dropped sockets, refused offers, dropped and delayed acks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from test_emulator_kit import StreamClient

from decart_widget.emulator import Emulator


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(tick_seconds=0.2) as emulator:
        yield emulator


async def test_drop_socket_after_aborts_without_a_close_frame(emu: Emulator) -> None:
    emu.faults.drop_socket_after = 0.5
    client = await StreamClient.connect(emu)
    try:
        code, _ = await client.wait_closed()
        assert code == 1006  # abnormal closure: what a network loss looks like
        await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "dropped")
        assert emu.sessions[0].close_code is None
    finally:
        await client.close()

    # Sockets opened after the fault is cleared stay up (a reconnect succeeds).
    emu.faults.drop_socket_after = None
    again = await StreamClient.connect(emu)
    try:
        assert (await again.prompt("anime"))["success"] is True
        await again.offer()
        await again.expect("generation_tick")
        assert emu.sessions[1].end_reason is None
    finally:
        await again.close()


async def test_drop_socket_after_applies_to_sockets_opened_later(emu: Emulator) -> None:
    client = await StreamClient.connect(emu)
    try:
        await client.prompt("anime")
        emu.faults.drop_socket_after = 0.0
        second = await StreamClient.connect(emu)
        try:
            assert (await second.wait_closed())[0] == 1006
        finally:
            await second.close()
        assert (await client.prompt("still up"))["success"] is True
        assert emu.sessions[0].end_reason is None
    finally:
        await client.close()


async def test_drop_connections_during_media(emu: Emulator) -> None:
    client = await StreamClient.connect(emu)
    try:
        await client.prompt("anime")
        await client.offer()
        await client.frame()
        assert await asyncio.to_thread(emu.drop_connections) == 1
        assert (await client.wait_closed())[0] == 1006
        await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "dropped")
        assert not client.of_type("generation_ended")
    finally:
        await client.close()


async def test_refuse_offers(emu: Emulator) -> None:
    emu.faults.refuse_offers = True
    client = await StreamClient.connect(emu)
    try:
        assert (await client.prompt("anime"))["success"] is True  # control still works
        await client.send({"type": "offer", "sdp": "v=0\r\n"})
        error = await client.expect("error")
        assert "Offer refused" in error["error"]
        assert await client.wait_closed() == (1011, "offer refused")
        await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "offer_refused")
        assert not client.of_type("answer")
    finally:
        await client.close()


async def test_drop_acks_applies_but_never_acknowledges(emu: Emulator) -> None:
    client = await StreamClient.connect(emu)
    try:
        emu.faults.drop_acks = True
        await client.send({"type": "prompt", "prompt": "lost ack"})
        await emu.wait_until_async(
            lambda: bool(emu.sessions) and emu.sessions[0].prompts_applied == ["lost ack"]
        )
        emu.faults.drop_acks = False
        ack = await client.prompt("second")
        # Acks keep their order, so the first ack to arrive being the second's proves the
        # first was dropped rather than late.
        assert ack["prompt"] == "second"
        assert [a["prompt"] for a in client.of_type("prompt_ack")] == ["second"]
    finally:
        await client.close()


async def test_ack_delay_holds_acks_back_in_order(emu: Emulator) -> None:
    client = await StreamClient.connect(emu)
    try:
        emu.faults.ack_delay = 0.3
        started = time.monotonic()
        await client.send({"type": "prompt", "prompt": "one"})
        await client.send({"type": "set_image", "image_data": None, "prompt": "two"})
        first = await client.expect("prompt_ack")
        assert time.monotonic() - started >= 0.3
        await client.expect("set_image_ack")
        kinds = [m["type"] for m in client.messages]
        assert kinds.index("prompt_ack") < kinds.index("set_image_ack")
        assert first["prompt"] == "one"
    finally:
        await client.close()


def test_faults_reset() -> None:
    emu = Emulator()
    emu.faults.drop_acks = True
    emu.faults.ack_delay = 2
    emu.faults.reset()
    assert (emu.faults.drop_acks, emu.faults.ack_delay) == (False, 0.0)
