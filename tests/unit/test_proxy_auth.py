"""User tokens and the authenticate hook (no sockets)."""

from __future__ import annotations

import base64
import json

import pytest
from aiohttp.test_utils import make_mocked_request

from decart_widget.proxy._auth import (
    HmacAuthenticator,
    InvalidToken,
    Unauthorized,
    issue_token,
    run_authenticator,
    token_from_request,
    verify_token,
)

SECRET = "a-test-secret-of-32-characters!!"


def test_a_token_round_trips_with_its_user_and_expiry() -> None:
    token = issue_token("alice@example.com", SECRET, ttl=60, now=1_000)
    claims = verify_token(token, SECRET, now=1_030)
    assert claims.user == "alice@example.com"
    assert claims.issued_at == 1_000
    assert claims.expires_at == 1_060
    assert token.startswith("dwp1.")
    assert SECRET not in token


def test_an_expired_token_is_refused() -> None:
    token = issue_token("alice", SECRET, ttl=60, now=1_000)
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(token, SECRET, now=1_060)
    assert verify_token(token, SECRET, now=1_060, leeway=5).user == "alice"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = issue_token("alice", "another-secret-of-enough-length")
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(token, SECRET)


def test_a_tampered_payload_is_refused() -> None:
    prefix, payload, signature = issue_token("alice", SECRET, ttl=60).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(f"{prefix}.{forged}.{signature}", SECRET)


@pytest.mark.parametrize(
    "token",
    ["", "nonsense", "dwp1.a.b.c", "dwp2.x.y", "dwp1.é.x", "dwp1..", "x" * 5000, "dwp1.%%%.***"],
)
def test_malformed_tokens_are_refused_with_a_reason(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(token, SECRET)


def test_secrets_rotate_the_first_signs_any_verifies() -> None:
    old = issue_token("alice", "old-secret-0123456789")
    new = issue_token("bob", ["new-secret-0123456789", "old-secret-0123456789"])
    both = ["new-secret-0123456789", "old-secret-0123456789"]
    assert verify_token(old, both).user == "alice"
    assert verify_token(new, both).user == "bob"
    assert verify_token(new, "new-secret-0123456789").user == "bob"


@pytest.mark.parametrize("user", ["", "x" * 300])
def test_issue_refuses_bad_users(user: str) -> None:
    with pytest.raises(ValueError):
        issue_token(user, SECRET)


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), True])
def test_issue_refuses_bad_ttls(ttl: float) -> None:
    with pytest.raises(ValueError):
        issue_token("alice", SECRET, ttl=ttl)


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        issue_token("alice", "")
    with pytest.raises(ValueError):
        HmacAuthenticator([])


def test_the_token_is_taken_from_token_api_key_or_a_bearer_header() -> None:
    assert token_from_request(make_mocked_request("GET", "/v1/stream?token=t1&api_key=k")) == "t1"
    assert token_from_request(make_mocked_request("GET", "/v1/stream?api_key=k1")) == "k1"
    bearer = make_mocked_request("GET", "/v1/stream", headers={"Authorization": "Bearer b1"})
    assert token_from_request(bearer) == "b1"
    assert token_from_request(make_mocked_request("GET", "/v1/stream")) is None


async def test_the_hmac_authenticator_gives_the_user_or_none_with_a_reason() -> None:
    hook = HmacAuthenticator(SECRET)
    good = make_mocked_request("GET", f"/v1/stream?token={issue_token('carol', SECRET)}")
    assert await run_authenticator(hook, good) == ("carol", "")
    bad = make_mocked_request("GET", "/v1/stream?token=dwp1.e30.AAAA")
    assert await run_authenticator(hook, bad) == (None, "bad token signature")
    missing = make_mocked_request("GET", "/v1/stream")
    assert await run_authenticator(hook, missing) == (None, "no token")


async def test_custom_hooks_may_be_sync_or_async_and_only_strings_admit() -> None:
    request = make_mocked_request("GET", "/v1/stream")

    async def async_hook(_request: object) -> str | None:
        return "dave"

    def refusing_hook(_request: object) -> str:
        raise Unauthorized("account suspended")

    assert await run_authenticator(async_hook, request) == ("dave", "")
    assert await run_authenticator(lambda _r: "erin", request) == ("erin", "")
    assert await run_authenticator(lambda _r: "", request) == (None, "invalid credentials")
    assert await run_authenticator(lambda _r: None, request) == (None, "invalid credentials")
    assert await run_authenticator(refusing_hook, request) == (None, "account suspended")
