"""Who is connecting: HMAC-signed user tokens and the ``authenticate(request)`` hook.

A platform's backend issues a short-lived token for a signed-in user with
``issue_token(user, secret, ttl)`` and gives it to the browser; the browser connects to the proxy
with ``?model=...&token=...``. The token is also accepted as ``api_key=`` (so Decart's own SDKs,
pointed at the proxy as their realtime base URL, work unchanged) and as an
``Authorization: Bearer`` header (for server-side clients).

Token format: ``dwp1.<payload>.<signature>``, both parts unpadded base64url; the payload is the
JSON object ``{"sub": user, "iat": issued_at, "exp": expires_at}`` (whole Unix seconds) and the
signature is HMAC-SHA256 over ``dwp1.<payload>`` with the shared secret. Verification compares
signatures in constant time and enforces expiry. Several secrets may be configured, so a secret
can be rotated without logging everyone out: the first signs, any of them verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiohttp import web

TOKEN_PREFIX = "dwp1"
#: Longer tokens are refused before any work is done on them.
MAX_TOKEN_LENGTH = 4096
MAX_USER_LENGTH = 256

Secret: TypeAlias = str | bytes
Secrets: TypeAlias = Secret | Sequence[Secret]

#: The hook: given the WebSocket upgrade request, the user id, or None to refuse the client
#: (or raise `Unauthorized` with a reason the client may see).
Authenticator: TypeAlias = Callable[[web.Request], "Awaitable[str | None] | str | None"]


class InvalidToken(ValueError):
    """The token is malformed, wrongly signed or expired (the message says which)."""


class Unauthorized(Exception):
    """Raised by an authenticate hook to refuse a client with a reason (sent in the close)."""


@dataclass(frozen=True)
class TokenClaims:
    user: str
    issued_at: int
    expires_at: int


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("token is not valid base64url") from None


def _secret_list(secrets: Secrets) -> list[bytes]:
    items: Sequence[Secret] = [secrets] if isinstance(secrets, (str, bytes)) else secrets
    keys = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in items]
    if not keys or any(not key for key in keys):
        raise ValueError("the proxy secret must not be empty")
    return keys


def _sign(key: bytes, signing_input: str) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def issue_token(
    user: str, secret: Secrets, ttl: float = 3600.0, *, now: float | None = None
) -> str:
    """A token that identifies ``user`` for ``ttl`` seconds, signed with ``secret``.

    With several secrets the first one signs.
    """
    if not isinstance(user, str) or not user or len(user) > MAX_USER_LENGTH:
        raise ValueError(f"user must be a non-empty string of at most {MAX_USER_LENGTH} chars")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    issued = int(time.time() if now is None else now)
    payload = {"sub": user, "iat": issued, "exp": issued + max(1, round(ttl))}
    body = _b64encode(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    signing_input = f"{TOKEN_PREFIX}.{body}"
    signature = _b64encode(_sign(_secret_list(secret)[0], signing_input))
    return f"{signing_input}.{signature}"


def verify_token(
    token: str, secret: Secrets, *, now: float | None = None, leeway: float = 0.0
) -> TokenClaims:
    """Check a token's signature (constant time) and expiry; raise `InvalidToken` if bad."""
    keys = _secret_list(secret)
    if not isinstance(token, str) or not token:
        raise InvalidToken("no token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token too long")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise InvalidToken("not a proxy token")
    try:
        signature = _b64decode(parts[2])
    except InvalidToken:
        signature = b""
    signing_input = f"{parts[0]}.{parts[1]}"
    try:
        signing_input.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidToken("not a proxy token") from None
    # Compare against every key without stopping early, so timing tells nothing.
    valid = False
    for key in keys:
        valid |= hmac.compare_digest(_sign(key, signing_input), signature)
    if not valid:
        raise InvalidToken("bad token signature")
    try:
        payload: Any = json.loads(_b64decode(parts[1]))
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("token payload is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidToken("token payload is not an object")
    user, issued, expires = payload.get("sub"), payload.get("iat", 0), payload.get("exp")
    if not isinstance(user, str) or not user:
        raise InvalidToken("token has no user")
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise InvalidToken("token has no expiry")
    if isinstance(issued, bool) or not isinstance(issued, int):
        issued = 0
    current = time.time() if now is None else now
    if current >= expires + leeway:
        raise InvalidToken("token expired")
    return TokenClaims(user=user, issued_at=issued, expires_at=expires)


def token_from_request(request: web.Request) -> str | None:
    """The credential a client presented: ``token=``, ``api_key=`` or a Bearer header."""
    for name in ("token", "api_key"):
        value = request.query.get(name)
        if value:
            return value
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class HmacAuthenticator:
    """The built-in hook: a valid, unexpired `issue_token` token gives its user."""

    def __init__(self, secret: Secrets, *, leeway: float = 0.0) -> None:
        _secret_list(secret)  # fail early on an empty secret
        self._secret = secret
        self._leeway = leeway

    def __call__(self, request: web.Request) -> str:
        token = token_from_request(request)
        if token is None:
            raise Unauthorized("no token")
        try:
            return verify_token(token, self._secret, leeway=self._leeway).user
        except InvalidToken as exc:
            raise Unauthorized(str(exc)) from None


async def run_authenticator(hook: Authenticator, request: web.Request) -> tuple[str | None, str]:
    """Call a sync or async hook: ``(user, "")``, or ``(None, why)`` when it refuses.

    Anything but a non-empty string refuses the client; `Unauthorized` gives the reason.
    """
    try:
        result = hook(request)
        if inspect.isawaitable(result):
            result = await result
    except Unauthorized as exc:
        return None, str(exc) or "refused"
    if isinstance(result, str) and result:
        return result[:MAX_USER_LENGTH], ""
    return None, "invalid credentials"
