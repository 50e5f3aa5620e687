"""Short-lived client tokens, minted in the kernel so the permanent key never reaches a browser.

`TokenMinter(backend).mint(...)` posts to ``/v1/client/tokens`` (docs/protocol.md) with httpx.
A minted token is cached per set of options and reused until shortly before it expires.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx

from ._backends import Backend
from .protocol._errors import AuthenticationError, ConnectionLost, DecartError, InvalidInput
from .protocol._urls import redact, redact_key

log = logging.getLogger("decart_widget.tokens")

TOKENS_PATH = "/v1/client/tokens"
MAX_LIST = 20
#: A cached token is replaced when less than this share of its lifetime (or 10 s) is left.
REFRESH_SHARE = 0.25
REFRESH_MIN_SECONDS = 10.0


@dataclass(frozen=True)
class ClientToken:
    """A short-lived ``ek_`` key, safe to hand to a browser."""

    api_key: str = field(repr=False)
    expires_at: datetime
    token: str | None = field(default=None, repr=False)
    permissions: dict[str, Any] | None = None
    constraints: dict[str, Any] | None = None

    def seconds_left(self, now: datetime | None = None) -> float:
        now = now or datetime.now(timezone.utc)
        return (self.expires_at - now).total_seconds()

    def __repr__(self) -> str:
        return (
            f"ClientToken(api_key={redact_key(self.api_key)!r}, "
            f"expires_at={self.expires_at.isoformat()!r})"
        )


def _request_body(
    expires_in: int,
    allowed_models: Sequence[str] | None,
    allowed_origins: Sequence[str] | None,
    max_session_duration: int | None,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 1 <= expires_in <= 3600
    ):
        raise InvalidInput(
            f"expires_in must be a whole number of seconds from 1 to 3600, got {expires_in!r}"
        )
    body: dict[str, Any] = {"expiresIn": expires_in}
    for label, key, values in (
        ("allowed_models", "allowedModels", allowed_models),
        ("allowed_origins", "allowedOrigins", allowed_origins),
    ):
        if values is None:
            continue
        if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
            raise InvalidInput(f"{label} must be a list of non-empty strings, got {values!r}")
        if len(values) > MAX_LIST:
            raise InvalidInput(f"{label} takes at most {MAX_LIST} entries, got {len(values)}")
        body[key] = list(values)
    if max_session_duration is not None:
        if (
            isinstance(max_session_duration, bool)
            or not isinstance(max_session_duration, int)
            or max_session_duration <= 0
        ):
            raise InvalidInput(
                f"max_session_duration must be a positive whole number of seconds, "
                f"got {max_session_duration!r}"
            )
        body["constraints"] = {"realtime": {"maxSessionDuration": max_session_duration}}
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidInput(f"metadata must be a dict, got {type(metadata).__name__}")
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"metadata must be JSON-serialisable: {exc}") from None
        body["metadata"] = metadata
    return body


def _parse_expiry(value: object) -> datetime:
    if not isinstance(value, str):
        raise DecartError(f"token response has no expiresAt: {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DecartError(f"token response has a bad expiresAt: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _server_words(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(payload, dict):
        detail = payload.get("detail", payload.get("error", payload.get("message")))
        if isinstance(detail, list):
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                    parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
                else:
                    parts.append(str(item))
            return "; ".join(parts)
        if detail is not None:
            return str(detail)
    return json.dumps(payload)[:300]


def _token_from_response(response: httpx.Response, url: str) -> ClientToken:
    status = response.status_code
    if status == 401:
        raise AuthenticationError(f"the API key was refused by {url}: {_server_words(response)}")
    if status in (400, 403, 422):
        raise InvalidInput(f"token request refused ({status}): {_server_words(response)}")
    if status >= 400:
        raise DecartError(f"token request failed ({status}) at {url}: {_server_words(response)}")
    try:
        payload = response.json()
    except ValueError:
        raise DecartError(f"token response from {url} is not JSON") from None
    api_key = payload.get("apiKey") if isinstance(payload, dict) else None
    if not isinstance(api_key, str) or not api_key:
        raise DecartError(f"token response from {url} has no apiKey")
    permissions = payload.get("permissions")
    constraints = payload.get("constraints")
    token = payload.get("token")
    return ClientToken(
        api_key=api_key,
        expires_at=_parse_expiry(payload.get("expiresAt")),
        token=token if isinstance(token, str) else None,
        permissions=permissions if isinstance(permissions, dict) else None,
        constraints=constraints if isinstance(constraints, dict) else None,
    )


class TokenMinter:
    """Mints client tokens from a backend's permanent key (sync `mint`, async `amint`)."""

    def __init__(self, backend: Backend, *, timeout: float = 10.0) -> None:
        self.backend = backend
        self.timeout = timeout
        self._cache: dict[str, ClientToken] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.backend.api_url.rstrip("/") + TOKENS_PATH

    def _cached(self, cache_key: str) -> ClientToken | None:
        with self._lock:
            token = self._cache.get(cache_key)
        if token is None:
            return None
        lifetime = token.seconds_left()
        if lifetime > REFRESH_MIN_SECONDS and lifetime > self._margin(token):
            return token
        return None

    @staticmethod
    def _margin(token: ClientToken) -> float:
        return max(REFRESH_MIN_SECONDS, REFRESH_SHARE * token.seconds_left())

    def _store(self, cache_key: str, token: ClientToken, expires_in: int) -> ClientToken:
        # A token is worth caching only if it will outlive the refresh margin.
        if expires_in * (1 - REFRESH_SHARE) > REFRESH_MIN_SECONDS:
            with self._lock:
                self._cache[cache_key] = token
        return token

    def mint(
        self,
        expires_in: int = 60,
        allowed_models: Sequence[str] | None = None,
        allowed_origins: Sequence[str] | None = None,
        max_session_duration: int | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        reuse: bool = True,
    ) -> ClientToken:
        """Mint a client token (or reuse a cached one with the same options)."""
        body = _request_body(
            expires_in, allowed_models, allowed_origins, max_session_duration, metadata
        )
        cache_key = json.dumps(body, sort_keys=True)
        if reuse and (cached := self._cached(cache_key)) is not None:
            return cached
        try:
            with httpx.Client(timeout=self.timeout) as client:
                response = client.post(self.url, json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise self._connection_error(exc) from None
        token = _token_from_response(response, self.url)
        log.debug("minted %r", token)
        return self._store(cache_key, token, expires_in)

    async def amint(
        self,
        expires_in: int = 60,
        allowed_models: Sequence[str] | None = None,
        allowed_origins: Sequence[str] | None = None,
        max_session_duration: int | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        reuse: bool = True,
    ) -> ClientToken:
        """The async twin of `mint`."""
        body = _request_body(
            expires_in, allowed_models, allowed_origins, max_session_duration, metadata
        )
        cache_key = json.dumps(body, sort_keys=True)
        if reuse and (cached := self._cached(cache_key)) is not None:
            return cached
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(self.url, json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise self._connection_error(exc) from None
        token = _token_from_response(response, self.url)
        log.debug("minted %r", token)
        return self._store(cache_key, token, expires_in)

    def _headers(self) -> dict[str, str]:
        return {"X-API-KEY": self.backend.api_key, "Content-Type": "application/json"}

    def _connection_error(self, exc: httpx.HTTPError) -> ConnectionLost:
        what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        return ConnectionLost(
            f"token request to {redact(self.url)} {what}: {redact(str(exc)) or type(exc).__name__}"
        )

    def __repr__(self) -> str:
        return f"TokenMinter({self.backend!r})"
