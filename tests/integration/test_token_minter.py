"""TokenMinter against the emulator's real ``/v1/client/tokens`` endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import httpx
import pytest

import decart_widget as dw
from decart_widget._tokens import TOKENS_PATH, _token_from_response


@pytest.fixture(scope="module")
def emulator() -> Iterator[dw.Emulator]:
    with dw.Emulator() as emu:
        yield emu


def test_mint_with_every_option(emulator: dw.Emulator) -> None:
    token = dw.TokenMinter(emulator).mint(
        expires_in=120,
        allowed_models=["lucy-2.1"],
        allowed_origins=["http://localhost:8888"],
        max_session_duration=300,
        metadata={"user": "alice"},
    )
    assert token.api_key.startswith("ek_")
    left = token.seconds_left(datetime.now(timezone.utc))
    assert 100 < left <= 120
    assert emulator.api_key not in repr(token) and token.api_key not in repr(token)


async def test_amint_works_and_tokens_are_reused_until_near_expiry(emulator: dw.Emulator) -> None:
    minter = dw.TokenMinter(emulator)
    first = await minter.amint(expires_in=600)
    assert await minter.amint(expires_in=600) is first  # cached: same options, far from expiry
    assert minter.mint(expires_in=600) is first
    fresh = await minter.amint(expires_in=600, reuse=False)
    assert fresh.api_key != first.api_key
    other = await minter.amint(expires_in=600, allowed_models=["lucy-2.5"])
    assert other.api_key != first.api_key  # other options, another token
    short = minter.mint(expires_in=5)  # too short-lived to be worth reusing
    assert minter.mint(expires_in=5).api_key != short.api_key


def test_a_refused_key_is_an_authentication_error(emulator: dw.Emulator) -> None:
    backend = dw.Decart(api_key="dct_wrong", api_url=emulator.api_url)
    with pytest.raises(dw.AuthenticationError, match="refused") as info:
        dw.TokenMinter(backend).mint()
    assert "dct_wrong" not in str(info.value)


def test_minting_from_a_client_token_is_refused_with_the_servers_words(
    emulator: dw.Emulator,
) -> None:
    token = dw.TokenMinter(emulator).mint()
    backend = dw.Decart(api_key=token.api_key, api_url=emulator.api_url)
    with pytest.raises(dw.InvalidInput, match="Cannot create client token from a client token"):
        dw.TokenMinter(backend).mint()


def test_a_422_carries_each_validation_message(emulator: dw.Emulator) -> None:
    # The minter validates before sending, so post a bad body directly to get a real 422.
    url = emulator.api_url + TOKENS_PATH
    response = httpx.post(
        url, json={"expiresIn": 0, "allowedModels": "x"}, headers={"X-API-KEY": emulator.api_key}
    )
    assert response.status_code == 422
    with pytest.raises(dw.InvalidInput, match=r"422.*expiresIn.*allowedModels") as info:
        _token_from_response(response, url)
    assert "less than" in str(info.value) or "greater" in str(info.value)
