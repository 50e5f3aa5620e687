"""LiveKit access tokens: HS256 JWTs, minted for a room's user and checked at join.

The claims are LiveKit's: ``iss`` (the API key), ``sub`` (the participant identity), ``nbf``,
``exp``, ``jti`` and ``video`` (the grants: ``room``, ``roomJoin``, ``canPublish``,
``canSubscribe``, ``canPublishData``). A token is refused (`TokenRefused`, HTTP 401 as LiveKit's
server answers) when it is not a JWT, names another API key, carries a bad signature, is expired
or not yet valid, or has no ``roomJoin`` grant for a named room.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

#: The API key (``iss``) every emulator token names.
API_KEY = "APIdecartemulator"

INVALID_TOKEN = "invalid authorization token"
PERMISSION_DENIED = "permissions denied"


class TokenRefused(Exception):
    """A token that must not join; ``message`` is the body LiveKit's server would answer."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Grant:
    """What a verified token allows."""

    identity: str
    room: str
    can_publish: bool
    can_subscribe: bool
    can_publish_data: bool
    expires_at: float


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(signing_input: bytes, secret: bytes) -> str:
    return _b64encode(hmac.new(secret, signing_input, hashlib.sha256).digest())


def mint(
    secret: bytes,
    *,
    identity: str,
    room: str,
    ttl_seconds: float = 600,
    api_key: str = API_KEY,
    can_publish: bool = True,
    can_subscribe: bool = True,
    can_publish_data: bool = True,
    room_join: bool = True,
    now: float | None = None,
) -> str:
    """A signed access token for ``identity`` in ``room``."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "jti": identity,
        "nbf": issued,
        "exp": issued + int(ttl_seconds),
        "video": {
            "room": room,
            "roomJoin": room_join,
            "canPublish": can_publish,
            "canSubscribe": can_subscribe,
            "canPublishData": can_publish_data,
        },
    }
    header = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    return f"{header}.{payload}.{_sign(signing_input, secret)}"


def verify(token: str, secret: bytes, *, api_key: str = API_KEY, now: float | None = None) -> Grant:
    """The grant a token carries; raises `TokenRefused` when it must not join."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRefused(f"{INVALID_TOKEN}: malformed token")
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenRefused(f"{INVALID_TOKEN}: {exc}") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise TokenRefused(f"{INVALID_TOKEN}: unsupported algorithm")
    if not isinstance(claims, dict):
        raise TokenRefused(f"{INVALID_TOKEN}: claims are not an object")
    if claims.get("iss") != api_key:
        raise TokenRefused("invalid API key")
    expected = _sign(f"{parts[0]}.{parts[1]}".encode("ascii"), secret)
    if not hmac.compare_digest(expected, parts[2]):
        raise TokenRefused(f"{INVALID_TOKEN}: error in cryptographic primitive")
    moment = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, (int, float)) or moment >= exp:
        raise TokenRefused(f"{INVALID_TOKEN}: token is expired (exp)")
    if isinstance(nbf, (int, float)) and moment < nbf:
        raise TokenRefused(f"{INVALID_TOKEN}: token not valid yet (nbf)")
    video = claims.get("video")
    identity = claims.get("sub")
    if not isinstance(video, dict) or not isinstance(identity, str) or not identity:
        raise TokenRefused(PERMISSION_DENIED)
    room = video.get("room")
    if video.get("roomJoin") is not True or not isinstance(room, str) or not room:
        raise TokenRefused(PERMISSION_DENIED)
    return Grant(
        identity=identity,
        room=room,
        can_publish=video.get("canPublish", True) is not False,
        can_subscribe=video.get("canSubscribe", True) is not False,
        can_publish_data=video.get("canPublishData", True) is not False,
        expires_at=float(exp),
    )
