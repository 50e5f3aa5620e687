"""``/v1/stream`` admission: each refusal sends an ``error`` message with a clear text, then closes
with its code (4001 key, 4003 model/origin not allowed, 4004 unknown model, 1013 concurrency)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_emulator_kit import StreamClient, mint

from decart_widget.emulator import Emulator
from decart_widget.protocol._errors import (
    AuthenticationError,
    ConcurrencyLimit,
    InvalidInput,
    classify,
)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(max_concurrent_sessions=2) as emulator:
        yield emulator


async def _refused(client: StreamClient) -> tuple[str, int | None, str | None]:
    error = await client.expect("error")
    code, reason = await client.wait_closed()
    return error["error"], code, reason


async def test_bad_key(emu: Emulator) -> None:
    client = await StreamClient.connect(emu, api_key="dct_not_the_key")
    text, code, reason = await _refused(client)
    assert (text, code, reason) == ("Invalid API key", 4001, "invalid_api_key")
    assert isinstance(classify(text), AuthenticationError)
    assert emu.sessions == []
    assert [(r.error, r.close_code) for r in emu.rejections] == [("Invalid API key", 4001)]


async def test_expired_client_token(emu: Emulator) -> None:
    token = await mint(emu, expiresIn=5)
    emu.advance_time(6)
    client = await StreamClient.connect(emu, api_key=token)
    text, code, _ = await _refused(client)
    assert (text, code) == ("Client token expired", 4001)
    assert isinstance(classify(text), AuthenticationError)


async def test_a_fresh_client_token_is_accepted(emu: Emulator) -> None:
    token = await mint(emu, expiresIn=5, allowedModels=["lucy-2.1"])
    client = await StreamClient.connect(emu, api_key=token)
    try:
        assert (await client.prompt("hello"))["success"] is True
        assert emu.sessions[0].key_kind == "client"
    finally:
        await client.close()


async def test_model_not_allowed_for_the_token(emu: Emulator) -> None:
    token = await mint(emu, allowedModels=["lucy-2.5"])
    client = await StreamClient.connect(emu, api_key=token, model="lucy-2.1")
    text, code, reason = await _refused(client)
    assert text == "Model 'lucy-2.1' not allowed for this client token"
    assert (code, reason) == (4003, "model_not_allowed")
    assert isinstance(classify(text), AuthenticationError)


async def test_origin_is_checked_verbatim(emu: Emulator) -> None:
    token = await mint(emu, allowedOrigins=["http://localhost:8888"])
    for origin in ("http://localhost:8888/", "http://evil.example", None):
        client = await StreamClient.connect(emu, api_key=token, origin=origin)
        text, code, reason = await _refused(client)
        assert text == f"Origin '{origin or ''}' not allowed for this client token"
        assert (code, reason) == (4003, "origin_not_allowed")
    client = await StreamClient.connect(emu, api_key=token, origin="http://localhost:8888")
    try:
        assert (await client.prompt("ok"))["success"] is True
        assert emu.sessions[0].origin == "http://localhost:8888"
    finally:
        await client.close()


async def test_unknown_model(emu: Emulator) -> None:
    client = await StreamClient.connect(emu, model="lucy-9000")
    text, code, reason = await _refused(client)
    assert text.startswith("Unknown model 'lucy-9000'") and "lucy-2.1" in text
    assert (code, reason) == (4004, "invalid_model")
    assert isinstance(classify(text), InvalidInput)


async def test_the_permanent_key_may_use_any_known_model_and_origin(emu: Emulator) -> None:
    client = await StreamClient.connect(
        emu, model="mirage", origin="http://anything", resolution="720p", user_agent="test/1"
    )
    try:
        assert (await client.prompt("hi"))["success"] is True
        record = emu.sessions[0]
        assert (record.model, record.key_kind, record.resolution, record.user_agent) == (
            "mirage",
            "permanent",
            "720p",
            "test/1",
        )
    finally:
        await client.close()


async def test_concurrency_limit_closes_1013_and_frees_on_close(emu: Emulator) -> None:
    first = await StreamClient.connect(emu)
    second = await StreamClient.connect(emu)
    await first.prompt("a")
    await second.prompt("b")
    # Client tokens count against the key that minted them.
    token = await mint(emu)
    third = await StreamClient.connect(emu, api_key=token)
    code, reason = await third.wait_closed()
    assert (code, reason) == (1013, "Concurrent session limit reached.")
    assert third.messages == []
    assert isinstance(classify(reason or ""), ConcurrencyLimit)

    await first.close()
    await emu.wait_until_async(lambda: emu.sessions[0].end_reason == "disconnect")
    fourth = await StreamClient.connect(emu)
    try:
        assert (await fourth.prompt("d"))["success"] is True
    finally:
        await second.close()
        await fourth.close()
