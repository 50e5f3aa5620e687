"""The emulator's aiohttp application: token minting, quota, and ``/v1/stream`` admission.

``POST /v1/client/tokens`` (``X-API-KEY``): 200 with the token; 401 ``{"detail": "Invalid API
key"}``; 403 ``{"detail": "Cannot create client token from a client token"}`` for any ``ek_``
caller; 422 ``{"detail": [{type, loc, msg, input}, ...]}`` for a bad body, also for one that is
not strict JSON (``NaN``), nests more than 32 levels, or holds a number too large to be finite.

``GET /v1/realtime/quota`` (``X-API-KEY``, permanent key or client token): the account's
``concurrent_sessions_limit``, ``active_sessions`` and ``credits_seconds_remaining`` (null:
unlimited). ``GET /health``: ``{"status": "ok"}``. ``/rtc`` and ``/rtc/validate`` are the Gen-B
LiveKit rooms' signal endpoints (`decart_widget.emulator._livekit`).

``GET /v1/stream?api_key=&model=[&resolution=][&user_agent=]`` is checked before a session
starts; a refusal sends ``{"type": "error", "error": ...}`` and then closes with:

======  ====================================================================================
code    when (error text)
======  ====================================================================================
4001    no or unknown key ("Invalid API key"); expired client token ("Client token expired")
4003    the client token's ``allowedModels`` lacks the model ("Model 'x' not allowed for this
        client token"), or its ``allowedOrigins`` lacks the ``Origin`` header, compared verbatim
        ("Origin 'o' not allowed for this client token")
4004    no model, or a model the registry (`decart_widget.models`) does not know
        ("Unknown model 'x' ...")
1013    the account already has ``max_concurrent_sessions`` live sessions; no ``error`` message,
        close reason "Concurrent session limit reached." (as the real service does)
======  ====================================================================================

The access log (logger ``decart_widget.emulator.access``, debug level) shows paths, never query
strings, so keys in ``?api_key=`` never reach a log; values from the query that are logged (a
refused model name) have their control characters escaped, so they cannot forge a log line.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .. import models
from .._connection_guard import ConnectionGuard
from .._logging import escape_controls
from ..protocol._constants import CLOSE_TRY_AGAIN_LATER
from ..protocol._urls import redact_key
from ..protocol.messages import Error, encode
from ._config import Services
from ._livekit import RoomServer
from ._stream import CLOSE_TIMEOUT, DROPPED, SHUTDOWN, Admission, StreamSession
from ._tokens import (
    CLIENT_FROM_CLIENT,
    INVALID_KEY,
    Credential,
    CredentialError,
    MintRequestInvalid,
    decode_mint_body,
    parse_mint_request,
)

log = logging.getLogger("decart_widget.emulator.app")
access_log = logging.getLogger("decart_widget.emulator.access")
guard_log = logging.getLogger("decart_widget.emulator.guard")

CLOSE_INVALID_KEY = 4001
CLOSE_NOT_ALLOWED = 4003
CLOSE_UNKNOWN_MODEL = 4004
CLOSE_CONCURRENCY = CLOSE_TRY_AGAIN_LATER
CONCURRENCY_REASON = "Concurrent session limit reached."


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log lines without query strings (they may carry ``api_key``)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "%s %s -> %s (%.1f ms)", request.method, request.path, response.status, time * 1000
        )


@dataclass(frozen=True)
class Refusal:
    error: str | None
    close_code: int
    close_reason: str


def _json_error(status: int, detail: Any) -> web.Response:
    return web.json_response({"detail": detail}, status=status)


class EmulatorApp:
    """Routes and the set of live sessions."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.sessions: dict[str, StreamSession] = {}
        config = services.config
        #: Connection admission, as the proxy's: installed on the server by `Emulator`.
        self.guard = ConnectionGuard(
            handshake_timeout=config.handshake_timeout,
            max_connections=config.connection_cap(),
            max_connections_per_address=config.max_connections_per_address,
            trust_forwarded=False,
            address_of=lambda request: request.remote,
            logger=guard_log,
            metrics_prefix="decart_emulator",
        )
        self.app = web.Application(client_max_size=1024 * 1024, middlewares=[self.guard.middleware])
        self.app.router.add_post("/v1/client/tokens", self.mint_token)
        self.app.router.add_get("/v1/realtime/quota", self.quota)
        self.app.router.add_get("/v1/stream", self.stream)
        self.app.router.add_get("/health", self.health)
        if isinstance(services.rooms, RoomServer):
            services.rooms.add_routes(self.app)

    # ---- HTTP -----------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def mint_token(self, request: web.Request) -> web.Response:
        key = request.headers.get("X-API-KEY", "").strip()
        tokens = self.services.tokens
        if key and tokens.is_client_key(key):
            return _json_error(403, CLIENT_FROM_CLIENT)
        try:
            credential = tokens.authenticate(key)
        except CredentialError:
            return _json_error(401, INVALID_KEY)
        raw = await request.read()
        try:
            mint_request = parse_mint_request(decode_mint_body(raw))
        except MintRequestInvalid as exc:
            return _json_error(422, exc.details)
        grant = tokens.mint(credential.account_key, mint_request)
        log.info(
            "minted client token %s (expires in %d s)",
            redact_key(grant.api_key),
            mint_request.expires_in,
        )
        return web.json_response(grant.response_body())

    async def quota(self, request: web.Request) -> web.Response:
        try:
            credential = self.services.tokens.authenticate(
                request.headers.get("X-API-KEY", "").strip()
            )
        except CredentialError as exc:
            return _json_error(401, exc.message)
        account = credential.account_key
        return web.json_response(
            {
                "concurrent_sessions_limit": self.services.config.max_concurrent_sessions,
                "active_sessions": self.active_sessions(account),
                "credits_seconds_remaining": self.services.credits.remaining(account),
            }
        )

    # ---- the realtime WebSocket -----------------------------------------------------------------

    def active_sessions(self, account_key: str) -> int:
        return sum(
            1 for s in self.sessions.values() if s.account_key == account_key and not s.ending
        )

    def admit(self, request: web.Request) -> Admission | Refusal:
        query = request.query
        origin = request.headers.get("Origin")
        try:
            credential = self.services.tokens.authenticate(query.get("api_key"))
        except CredentialError as exc:
            return Refusal(exc.message, CLOSE_INVALID_KEY, exc.code)
        model = query.get("model", "")
        if not model:
            return Refusal(
                "Unknown model '': the 'model' query parameter is missing",
                CLOSE_UNKNOWN_MODEL,
                "invalid_model",
            )
        if not models.is_known(model):
            known = ", ".join(models.names())
            return Refusal(
                f"Unknown model '{model}' (known: {known})", CLOSE_UNKNOWN_MODEL, "invalid_model"
            )
        refusal = self._check_grant(credential, model, origin)
        if refusal is not None:
            return refusal
        if self.active_sessions(credential.account_key) >= (
            self.services.config.max_concurrent_sessions
        ):
            return Refusal(None, CLOSE_CONCURRENCY, CONCURRENCY_REASON)
        return Admission(
            credential=credential,
            model=model,
            origin=origin,
            resolution=query.get("resolution"),
            user_agent=query.get("user_agent"),
        )

    @staticmethod
    def _check_grant(credential: Credential, model: str, origin: str | None) -> Refusal | None:
        grant = credential.grant
        if grant is None:
            return None
        if grant.allowed_models is not None and model not in grant.allowed_models:
            return Refusal(
                f"Model '{model}' not allowed for this client token",
                CLOSE_NOT_ALLOWED,
                "model_not_allowed",
            )
        if grant.allowed_origins is not None and origin not in grant.allowed_origins:
            return Refusal(
                f"Origin '{origin or ''}' not allowed for this client token",
                CLOSE_NOT_ALLOWED,
                "origin_not_allowed",
            )
        return None

    async def stream(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            max_msg_size=self.services.config.max_message_bytes,
            timeout=CLOSE_TIMEOUT,
            compress=False,
        )
        if not ws.can_prepare(request).ok:
            return _json_error(426, "This endpoint takes a WebSocket connection")
        await ws.prepare(request)
        decision = self.admit(request)
        if isinstance(decision, Refusal):
            model = request.query.get("model")
            origin = request.headers.get("Origin")
            log.info(
                "refused a stream (%s): %s",
                decision.close_code,
                escape_controls(decision.error or decision.close_reason),  # quotes the query
            )
            self.services.recorder.reject(
                decision.error or decision.close_reason, decision.close_code, model, origin
            )
            if decision.error is not None:
                await ws.send_str(encode(Error(error=decision.error)))
            await ws.close(code=decision.close_code, message=decision.close_reason.encode())
            return ws
        session_id = "emu_" + secrets.token_hex(8)
        session = StreamSession(self.services, ws, request, decision, session_id)
        self.sessions[session_id] = session
        try:
            await session.run()
        finally:
            del self.sessions[session_id]
        return ws

    def drop_sessions(self) -> int:
        """Abort every live session's socket (a simulated network loss); returns how many."""
        live = [s for s in self.sessions.values() if not s.ending]
        for session in live:
            session.end(DROPPED)
        return len(live)

    async def close_sessions(self, timeout: float = 10.0) -> None:
        """End every live session (close 1001 "server_shutdown") and wait for them."""
        sessions = list(self.sessions.values())
        for session in sessions:
            session.end(SHUTDOWN)
        waiters = [asyncio.ensure_future(s.done.wait()) for s in sessions]
        if waiters:
            _, pending = await asyncio.wait(waiters, timeout=timeout)
            for waiter in pending:
                waiter.cancel()
            if pending:
                log.warning("%d session(s) did not end within %s s", len(pending), timeout)
