"""The emulator's HTTP API: client token minting (docs/protocol.md) and the quota endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from decart_widget.emulator import Emulator


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
async def http(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.api_url, trust_env=False) as client:
        yield client


async def _mint(
    http: httpx.AsyncClient, key: str, body: Any = None, **kwargs: Any
) -> httpx.Response:
    return await http.post("/v1/client/tokens", headers={"X-API-KEY": key}, json=body, **kwargs)


async def test_mint_returns_a_client_token_with_iso_expiry(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    before = datetime.now(timezone.utc)
    response = await _mint(http, emu.api_key, {})
    assert response.status_code == 200
    body = response.json()
    assert body["apiKey"].startswith("ek_") and len(body["apiKey"]) > 20
    assert body["expiresAt"].endswith("Z")
    expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert 55 <= (expires - before).total_seconds() <= 62  # default expiresIn: 60
    assert body["permissions"] is None and body["constraints"] is None
    assert "token" in body


async def test_mint_echoes_permissions_and_constraints(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    response = await _mint(
        http,
        emu.api_key,
        {
            "expiresIn": 3600,
            "allowedModels": ["lucy-2.1"],
            "allowedOrigins": ["http://localhost:8888"],
            "constraints": {"realtime": {"maxSessionDuration": 30}},
            "metadata": {"user": "u1"},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["permissions"] == {
        "allowedModels": ["lucy-2.1"],
        "allowedOrigins": ["http://localhost:8888"],
    }
    assert body["constraints"] == {"realtime": {"maxSessionDuration": 30}}


async def test_an_empty_body_is_allowed(emu: Emulator, http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/client/tokens", headers={"X-API-KEY": emu.api_key})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"expiresIn": 0}, ["body", "expiresIn"], "greater_than_equal"),
        ({"expiresIn": 3601}, ["body", "expiresIn"], "less_than_equal"),
        ({"expiresIn": 1.5}, ["body", "expiresIn"], "int_from_float"),
        ({"expiresIn": "60"}, ["body", "expiresIn"], "int_type"),
        ({"allowedModels": "lucy-2.1"}, ["body", "allowedModels"], "list_type"),
        ({"allowedModels": [f"m{i}" for i in range(21)]}, ["body", "allowedModels"], "too_long"),
        (
            {"allowedOrigins": [f"http://o{i}" for i in range(21)]},
            ["body", "allowedOrigins"],
            "too_long",
        ),
        ({"allowedOrigins": [3]}, ["body", "allowedOrigins", "0"], "string_type"),
        (
            {"constraints": {"realtime": {"maxSessionDuration": 0}}},
            ["body", "constraints", "realtime", "maxSessionDuration"],
            "greater_than_equal",
        ),
        ({"constraints": []}, ["body", "constraints"], "dict_type"),
        ({"metadata": ["a"]}, ["body", "metadata"], "dict_type"),
        ([1, 2], ["body"], "model_attributes_type"),
    ],
)
async def test_validation_errors_are_422_with_detail(
    emu: Emulator, http: httpx.AsyncClient, body: Any, loc: list[str], kind: str
) -> None:
    response = await _mint(http, emu.api_key, body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    assert detail[0]["loc"] == loc
    assert detail[0]["type"] == kind
    assert detail[0]["msg"]


async def test_every_validation_error_is_reported_at_once(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    response = await _mint(http, emu.api_key, {"expiresIn": 0, "metadata": 3})
    assert response.status_code == 422
    assert [d["loc"][-1] for d in response.json()["detail"]] == ["expiresIn", "metadata"]


async def test_invalid_json_is_422(emu: Emulator, http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/client/tokens",
        headers={"X-API-KEY": emu.api_key, "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("headers", [{}, {"X-API-KEY": "dct_wrong"}, {"X-API-KEY": ""}])
async def test_a_bad_or_missing_key_is_401(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.post("/v1/client/tokens", headers=headers, json={})
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key"}


async def test_a_client_token_cannot_mint_another(emu: Emulator, http: httpx.AsyncClient) -> None:
    token = (await _mint(http, emu.api_key, {})).json()["apiKey"]
    response = await _mint(http, token, {})
    assert response.status_code == 403
    assert response.json() == {"detail": "Cannot create client token from a client token"}


async def test_quota_reports_limits_sessions_and_credits(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    response = await http.get("/v1/realtime/quota", headers={"X-API-KEY": emu.api_key})
    assert response.json() == {
        "concurrent_sessions_limit": 4,
        "active_sessions": 0,
        "credits_seconds_remaining": None,
    }
    emu.set_credits(emu.api_key, 42)
    token = (await _mint(http, emu.api_key, {})).json()["apiKey"]
    response = await http.get("/v1/realtime/quota", headers={"X-API-KEY": token})
    assert response.json()["credits_seconds_remaining"] == 42  # a token bills its minting key
    assert (await http.get("/v1/realtime/quota")).status_code == 401


async def test_health(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).json() == {"status": "ok"}


def test_the_default_key_is_obviously_fake() -> None:
    import re

    key = Emulator().api_key
    assert key == "dct_local_emulator"
    assert not re.search(r"(dct_)[A-Za-z0-9]{24,}", key)
