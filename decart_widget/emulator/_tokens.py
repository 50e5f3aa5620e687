"""Credentials: the permanent key, and the client tokens (``ek_...``) minted from it.

`decode_mint_body` parses a ``POST /v1/client/tokens`` body as strict JSON, at most
`MAX_JSON_DEPTH` levels deep; `parse_mint_request` validates it (docs/protocol.md) and raises
`MintRequestInvalid` carrying FastAPI-style ``detail`` items for the 422 answer. `TokenStore`
mints tokens, and `authenticate` resolves any key to a `Credential` or raises `CredentialError`.
The store's clock can be moved forward (`advance`) so expiry is testable without waiting.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

PERMANENT: Literal["permanent"] = "permanent"
CLIENT: Literal["client"] = "client"
KeyKind = Literal["permanent", "client"]

CLIENT_PREFIX = "ek_"
MAX_LIST = 20
#: Deepest nesting of lists/objects a token request may have (metadata is echoed back).
MAX_JSON_DEPTH = 32
DEFAULT_EXPIRES_IN = 60
MAX_EXPIRES_IN = 3600
#: The longest ``maxSessionDuration`` a token may carry: a day. Decart documents no bound; an
#: unbounded one let ``1e308`` through as a 309-digit integer, echoed to every client that reads
#: the token's constraints (and overflowing any that holds it in 64 bits).
MAX_SESSION_DURATION = 86_400
#: Expired tokens are remembered this long (so a late use says "expired", not "invalid").
FORGET_AFTER = 24 * 3600.0

INVALID_KEY = "Invalid API key"
TOKEN_EXPIRED = "Client token expired"
CLIENT_FROM_CLIENT = "Cannot create client token from a client token"

Detail = dict[str, Any]


class MintRequestInvalid(Exception):
    """A token request body failed validation; ``details`` is the 422 ``detail`` list."""

    def __init__(self, details: list[Detail]) -> None:
        super().__init__("; ".join(str(d["msg"]) for d in details))
        self.details = details


class CredentialError(Exception):
    """A key was refused. ``code`` is the word of docs/protocol.md's error vocabulary."""

    def __init__(self, message: str, code: str = "invalid_api_key") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class MintRequest:
    expires_in: int = DEFAULT_EXPIRES_IN
    allowed_models: tuple[str, ...] | None = None
    allowed_origins: tuple[str, ...] | None = None
    max_session_duration: int | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class ClientTokenGrant:
    api_key: str = field(repr=False)
    account_key: str = field(repr=False)
    expires_at: float
    allowed_models: tuple[str, ...] | None
    allowed_origins: tuple[str, ...] | None
    max_session_duration: int | None
    metadata: dict[str, Any] | None
    #: ICE servers for the emulator's own peers in sessions opened with this token (None: the
    #: emulator's ``ice_servers=``); bound in-process (`TokenStore.bind_ice_servers`), never sent.
    ice_servers: tuple[dict[str, Any], ...] | None = field(default=None, repr=False)

    def expires_at_iso(self) -> str:
        moment = datetime.fromtimestamp(self.expires_at, tz=timezone.utc).replace(microsecond=0)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def permissions(self) -> dict[str, Any] | None:
        if self.allowed_models is None and self.allowed_origins is None:
            return None
        return {
            "allowedModels": list(self.allowed_models) if self.allowed_models is not None else None,
            "allowedOrigins": (
                list(self.allowed_origins) if self.allowed_origins is not None else None
            ),
        }

    def constraints(self) -> dict[str, Any] | None:
        if self.max_session_duration is None:
            return None
        return {"realtime": {"maxSessionDuration": self.max_session_duration}}

    def response_body(self) -> dict[str, Any]:
        return {
            "apiKey": self.api_key,
            "expiresAt": self.expires_at_iso(),
            "token": None,
            "permissions": self.permissions(),
            "constraints": self.constraints(),
        }


@dataclass(frozen=True)
class Credential:
    """Who is calling: the kind of key, the account (permanent key) it bills, its grant."""

    kind: KeyKind
    account_key: str = field(repr=False)
    grant: ClientTokenGrant | None = None


# ---- request validation ------------------------------------------------------------------------


def _detail(kind: str, loc: Iterable[str], msg: str, value: object) -> Detail:
    return {"type": kind, "loc": ["body", *loc], "msg": msg, "input": _json_safe(value)}


def _json_safe(value: object) -> object:
    """``value`` with non-finite floats as text, so that the 422 body stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    return value


def _json_invalid(msg: str) -> MintRequestInvalid:
    return MintRequestInvalid([_detail("json_invalid", [], msg, None)])


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _too_deep(value: object, limit: int) -> bool:
    """True when ``value`` nests lists/objects more than ``limit`` levels (iteratively)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def decode_mint_body(raw: bytes) -> object:
    """The JSON body of a token request (None when empty); `MintRequestInvalid` (a
    ``json_invalid`` 422) for text that is not strict JSON or nests more than
    `MAX_JSON_DEPTH` levels."""
    if not raw.strip():
        return None
    too_deep = f"JSON nested too deep (at most {MAX_JSON_DEPTH} levels)"
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise _json_invalid(f"JSON decode error: {too_deep}") from None
    except ValueError as exc:
        raise _json_invalid(f"JSON decode error: {exc}") from None
    if _too_deep(body, MAX_JSON_DEPTH):
        raise _json_invalid(too_deep)
    return body


def _int_field(
    value: object, loc: list[str], errors: list[Detail], *, low: int, high: int | None = None
) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(_detail("int_type", loc, "Input should be a valid integer", value))
        return None
    if isinstance(value, float) and not math.isfinite(value):  # 1e400 parses as inf
        errors.append(_detail("finite_number", loc, "Input should be a finite number", value))
        return None
    if isinstance(value, float) and not value.is_integer():
        errors.append(
            _detail(
                "int_from_float",
                loc,
                "Input should be a valid integer, got a number with a fractional part",
                value,
            )
        )
        return None
    number = int(value)
    if number < low:
        errors.append(
            _detail(
                "greater_than_equal", loc, f"Input should be greater than or equal to {low}", value
            )
        )
        return None
    if high is not None and number > high:
        errors.append(
            _detail("less_than_equal", loc, f"Input should be less than or equal to {high}", value)
        )
        return None
    return number


def _str_list(value: object, loc: list[str], errors: list[Detail]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        errors.append(_detail("list_type", loc, "Input should be a valid list", value))
        return None
    if len(value) > MAX_LIST:
        errors.append(
            _detail(
                "too_long",
                loc,
                f"List should have at most {MAX_LIST} items after validation, not {len(value)}",
                value,
            )
        )
        return None
    ok = True
    for index, item in enumerate(value):
        if not isinstance(item, str):
            errors.append(
                _detail("string_type", [*loc, str(index)], "Input should be a valid string", item)
            )
            ok = False
    return tuple(value) if ok else None


def _object(value: object, loc: list[str], errors: list[Detail]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(_detail("dict_type", loc, "Input should be a valid dictionary", value))
        return None
    return value


def parse_mint_request(body: object) -> MintRequest:
    """Validate a decoded JSON body (None for an empty body)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise MintRequestInvalid(
            [_detail("model_attributes_type", [], "Input should be a valid dictionary", body)]
        )
    errors: list[Detail] = []
    expires_in: int | None = DEFAULT_EXPIRES_IN
    if body.get("expiresIn") is not None:
        expires_in = _int_field(
            body["expiresIn"], ["expiresIn"], errors, low=1, high=MAX_EXPIRES_IN
        )
    models = _str_list(body.get("allowedModels"), ["allowedModels"], errors)
    origins = _str_list(body.get("allowedOrigins"), ["allowedOrigins"], errors)
    max_duration: int | None = None
    constraints = _object(body.get("constraints"), ["constraints"], errors)
    if constraints is not None:
        realtime = _object(constraints.get("realtime"), ["constraints", "realtime"], errors)
        if realtime is not None and realtime.get("maxSessionDuration") is not None:
            max_duration = _int_field(
                realtime["maxSessionDuration"],
                ["constraints", "realtime", "maxSessionDuration"],
                errors,
                low=1,
                high=MAX_SESSION_DURATION,
            )
    metadata = _object(body.get("metadata"), ["metadata"], errors)
    if errors:
        raise MintRequestInvalid(errors)
    assert expires_in is not None
    return MintRequest(
        expires_in=expires_in,
        allowed_models=models,
        allowed_origins=origins,
        max_session_duration=max_duration,
        metadata=metadata,
    )


# ---- the store ---------------------------------------------------------------------------------


class TokenStore:
    """The permanent keys the emulator accepts and the client tokens it minted."""

    def __init__(
        self, permanent_keys: Iterable[str], clock: Callable[[], float] = time.time
    ) -> None:
        self._lock = threading.Lock()
        self._permanent = set(permanent_keys)
        self._grants: dict[str, ClientTokenGrant] = {}
        self._clock = clock
        self._offset = 0.0

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the store's clock forward (tests: expire tokens without waiting)."""
        with self._lock:
            self._offset += seconds

    def add_permanent_key(self, key: str) -> None:
        with self._lock:
            self._permanent.add(key)

    def is_client_key(self, key: str) -> bool:
        return key.startswith(CLIENT_PREFIX)

    def mint(self, account_key: str, request: MintRequest) -> ClientTokenGrant:
        now = self.now()
        grant = ClientTokenGrant(
            api_key=CLIENT_PREFIX + secrets.token_urlsafe(24),
            account_key=account_key,
            expires_at=now + request.expires_in,
            allowed_models=request.allowed_models,
            allowed_origins=request.allowed_origins,
            max_session_duration=request.max_session_duration,
            metadata=request.metadata,
        )
        with self._lock:
            stale = [k for k, g in self._grants.items() if g.expires_at + FORGET_AFTER < now]
            for key in stale:
                del self._grants[key]
            self._grants[grant.api_key] = grant
        return grant

    def bind_ice_servers(self, key: str, servers: Iterable[dict[str, Any]]) -> None:
        """Sessions opened with client token ``key`` give the emulator's peers ``servers``;
        `CredentialError` for a key that is not a live client token of this store."""
        with self._lock:
            grant = self._grants.get(key)
            if grant is None or self.now() >= grant.expires_at:
                raise CredentialError("not a live client token of this emulator")
            self._grants[key] = replace(grant, ice_servers=tuple(servers))

    def authenticate(self, key: str | None) -> Credential:
        """Resolve a key (permanent or client token); raise `CredentialError` when refused."""
        if not key:
            raise CredentialError(INVALID_KEY)
        with self._lock:
            if key in self._permanent:
                return Credential(kind=PERMANENT, account_key=key)
            grant = self._grants.get(key)
        if grant is None:
            raise CredentialError(INVALID_KEY)
        if self.now() >= grant.expires_at:
            raise CredentialError(TOKEN_EXPIRED, "token_expired")
        return Credential(kind=CLIENT, account_key=grant.account_key, grant=grant)
