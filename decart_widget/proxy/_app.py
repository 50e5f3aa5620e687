"""The proxy's aiohttp application: routes, admission, shared state, graceful drain.

Routes:

* ``GET /v1/stream`` and ``GET /v1/realtime`` (WebSocket, ``?model=...&token=...``): one relayed
  session each (see `decart_widget.proxy._relay`);
* ``GET /healthz``: ``200 {"status": "ok", ...}``, or ``503`` while draining or when the ledger
  cannot be reached (so a load balancer stops sending new clients);
* ``GET /metrics``: Prometheus text format.

Admission of a WebSocket client, in order (every refusal closes the socket with a code and a
reason, and no upstream connection is opened): draining -> 1001; origin not allowed -> 4001;
authentication hook refuses -> 4001; bad ``model`` or ``resolution`` -> 4000; quota used up ->
4002; the user's concurrent sessions at the limit -> 4013. The refusal happens after the
WebSocket upgrade, because browsers cannot read the status of a failed upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from .. import __version__
from .._connection_guard import ConnectionGuard
from . import codes
from ._auth import Authenticator, HmacAuthenticator, run_authenticator
from ._config import ProxyConfig
from ._frames import ClientSocket, upstream_socket_class
from ._ledger import Ledger, LedgerError, open_ledger, period_start
from ._metrics import CONTENT_TYPE, Metrics
from ._relay import LEDGER_TIMEOUT, Relay, RelayContext

log = logging.getLogger("decart_widget.proxy.app")

STREAM_PATHS = ("/v1/stream", "/v1/realtime")
MAX_MODEL_LENGTH = 128
_MODEL_RE = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces
_RESOLUTION_RE = re.compile(r"^[0-9]{3,4}p$")
HEALTH_TIMEOUT = 2.0

SERVICE_KEY: web.AppKey[ProxyService] = web.AppKey("decart_proxy_service")
T = TypeVar("T")


async def _bounded(operation: Awaitable[T]) -> T:
    """A ledger operation that fails (`LedgerError`) rather than hang on a stuck database."""
    try:
        return await asyncio.wait_for(operation, LEDGER_TIMEOUT)
    except asyncio.TimeoutError:
        raise LedgerError(f"the ledger did not answer within {LEDGER_TIMEOUT:g} s") from None


class ProxyService:
    """The proxy as an aiohttp `web.Application` (``.app``) plus its shared state.

    ``authenticate`` replaces the built-in HMAC token check: a callable (sync or async) taking
    the upgrade `aiohttp.web.Request` and returning the user id, or None to refuse the client.
    ``ledger`` defaults to ``open_ledger(config.ledger)``; a ledger passed in is opened if needed
    and left open on shutdown.
    """

    def __init__(
        self,
        config: ProxyConfig,
        *,
        authenticate: Authenticator | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        config.validate_for_serving(custom_auth=authenticate is not None)
        self.config = config
        self.metrics = Metrics()
        self.ledger = ledger if ledger is not None else open_ledger(config.ledger)
        self._owns_ledger = ledger is None
        self.authenticate: Authenticator = (
            authenticate if authenticate is not None else HmacAuthenticator(config.secrets)
        )
        self.relays: set[Relay] = set()
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._http: aiohttp.ClientSession | None = None
        self._maintenance: asyncio.Task[None] | None = None
        #: Connection admission; `ProxyServer` installs it on its aiohttp server (call
        #: ``guard.install(runner.server)`` if you run the app yourself).
        self.guard = ConnectionGuard(
            handshake_timeout=config.handshake_timeout,
            max_connections=config.connection_cap(),
            max_connections_per_address=config.max_connections_per_address,
            trust_forwarded=config.trust_forwarded,
            address_of=self._client_address,
        )
        self.app = web.Application(middlewares=[self.guard.middleware])
        self.app[SERVICE_KEY] = self
        for path in STREAM_PATHS:
            self.app.router.add_get(path, self.handle_stream)
        self.app.router.add_get("/healthz", self.handle_health)
        self.app.router.add_get("/metrics", self.handle_metrics)
        self.app.router.add_get("/", self.handle_root)
        self.app.on_startup.append(self._on_startup)
        self.app.on_shutdown.append(self._on_shutdown)
        self.app.on_cleanup.append(self._on_cleanup)

    # ---- lifecycle ----------------------------------------------------------------------------

    async def _on_startup(self, app: web.Application) -> None:
        await self.ledger.open()
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=None, connect=self.config.upstream_connect_timeout),
            ws_response_class=upstream_socket_class(self.config.limits.max_frame_bytes),
        )
        try:
            reaped = await self.ledger.reap(now=time.time(), lease=self.config.lease_seconds)
        except LedgerError as exc:
            log.warning("could not reap stale sessions: %s", exc)
            reaped = 0
        self._maintenance = asyncio.create_task(self._maintain(), name="decart-proxy-leases")
        log.info(
            "proxy ready",
            extra={"fields": {**self.config.describe(), "reaped_sessions": reaped}},
        )

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.drain(0.0)

    async def _on_cleanup(self, app: web.Application) -> None:
        await self.guard.close()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._owns_ledger:
            await self.ledger.close()

    async def drain(self, timeout: float | None = None) -> None:
        """Stop admitting clients; wait up to ``timeout`` s (default: ``drain_seconds``) for the
        sessions to end by themselves, then close the rest with 1001."""
        if not self.draining:
            log.info("draining", extra={"fields": {"sessions": len(self.relays)}})
        self.draining = True
        self.metrics.draining = True
        wait = self.config.drain_seconds if timeout is None else timeout
        if wait > 0 and self.relays:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), wait)
        relays = list(self.relays)
        if relays:
            await asyncio.gather(
                *(
                    relay.shutdown(
                        "shutdown", codes.GOING_AWAY, "proxy shutting down", codes.GOING_AWAY
                    )
                    for relay in relays
                ),
                return_exceptions=True,
            )

    async def _maintain(self) -> None:
        """Renew the leases of this instance's sessions; end sessions whose proxy died."""
        period = max(0.05, self.config.lease_seconds / 3)
        while True:
            await asyncio.sleep(period)
            now = time.time()
            try:
                await self.ledger.touch([relay.id for relay in self.relays], now=now)
                await self.ledger.reap(now=now, lease=self.config.lease_seconds)
            except LedgerError as exc:
                self.metrics.ledger_errors += 1
                log.warning("lease renewal failed: %s", exc)

    # ---- HTTP routes --------------------------------------------------------------------------

    async def handle_root(self, request: web.Request) -> web.Response:
        return web.Response(
            text=f"decart-widget proxy {__version__}: connect a WebSocket to /v1/stream\n"
        )

    async def handle_health(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "status": "ok",
            "version": __version__,
            "instance": self.config.instance,
            "sessions": len(self.relays),
        }
        status = 200
        if self.draining:
            body["status"] = "draining"
            status = 503
        else:
            try:
                await asyncio.wait_for(self.ledger.ping(), HEALTH_TIMEOUT)
                body["ledger"] = "ok"
            except (LedgerError, asyncio.TimeoutError) as exc:
                body["status"] = "ledger_unavailable"
                body["ledger"] = str(exc) or "timeout"
                status = 503
        return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})

    async def handle_metrics(self, request: web.Request) -> web.Response:
        self.metrics.sessions_active = len(self.relays)
        return web.Response(
            body=(self.metrics.render() + self.guard.render()).encode("utf-8"),
            headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"},
        )

    # ---- the WebSocket ------------------------------------------------------------------------

    def _client_address(self, request: web.Request) -> str | None:
        if self.config.trust_forwarded:
            # The last entry is the one the trusted balancer added (the address it saw); earlier
            # ones were sent by the client and prove nothing.
            forwarded = request.headers.get("X-Forwarded-For", "")
            last = forwarded.rsplit(",", 1)[-1].strip()
            if last:
                return last
        return request.remote

    async def _refuse(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        reason_key: str,
        code: int,
        text: str,
        **fields: Any,
    ) -> web.WebSocketResponse:
        # Waiting for the close reply of a refused client is worth nothing: under a flood, its
        # connection is the first to make room for a new one.
        self.guard.refusing(request)
        self.metrics.refusals[reason_key] += 1
        log.info("refused", extra={"fields": {"reason": reason_key, "code": code, **fields}})
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(
                ws.close(code=code, message=codes.cut_reason(text).encode("utf-8")),
                self.config.close_timeout + 1.0,
            )
        return ws

    async def handle_stream(self, request: web.Request) -> web.StreamResponse:
        config = self.config
        ws = ClientSocket(
            max_frame_bytes=config.limits.max_frame_bytes,
            heartbeat=config.heartbeat,
            timeout=config.close_timeout,
            compress=False,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(
                status=426,
                text="this endpoint takes a WebSocket: ws(s)://host/v1/stream?model=...&token=...\n",
                headers={"Upgrade": "websocket"},
            )
        await ws.prepare(request)
        client = self._client_address(request)

        if self.draining:
            return await self._refuse(
                request, ws, "draining", codes.GOING_AWAY, "proxy shutting down", client=client
            )
        origin = request.headers.get("Origin")
        if config.allowed_origins and origin not in config.allowed_origins:
            return await self._refuse(
                request,
                ws,
                "origin",
                codes.UNAUTHORIZED,
                "Unauthorized: origin not allowed",
                origin=origin,
                client=client,
            )
        try:
            user, why = await run_authenticator(self.authenticate, request)
        except Exception:
            log.exception("the authenticate hook failed")
            return await self._refuse(
                request,
                ws,
                "auth_error",
                codes.UPSTREAM_ERROR,
                "authentication unavailable",
                client=client,
            )
        if user is None:
            return await self._refuse(
                request,
                ws,
                "unauthorized",
                codes.UNAUTHORIZED,
                f"Unauthorized: {why}",
                client=client,
            )

        model = request.query.get("model", "")
        if not model:
            return await self._refuse(
                request,
                ws,
                "bad_request",
                codes.BAD_REQUEST,
                "invalid model: the model parameter is missing",
                user=user,
            )
        if not _MODEL_RE.match(model) or (
            config.allowed_models and model not in config.allowed_models
        ):
            return await self._refuse(
                request,
                ws,
                "bad_request",
                codes.BAD_REQUEST,
                f"invalid model {model[:40]!r}: not served by this proxy",
                user=user,
            )
        resolution = request.query.get("resolution") or None
        if resolution is not None and not _RESOLUTION_RE.match(resolution):
            return await self._refuse(
                request,
                ws,
                "bad_request",
                codes.BAD_REQUEST,
                "invalid resolution (e.g. 720p)",
                user=user,
            )

        session_id = f"px_{uuid.uuid4().hex}"
        now = time.time()
        limits = config.limits
        try:
            quota = await _bounded(self.ledger.get_quota(user))
            if quota is None:
                quota = limits.quota_seconds
            since = period_start(limits.quota_period, now)
            if quota is not None:
                used = await _bounded(self.ledger.usage(user, since=since))
                if used >= quota:
                    return await self._refuse(
                        request,
                        ws,
                        "quota_exhausted",
                        codes.QUOTA_EXHAUSTED,
                        f"Usage quota exhausted (insufficient_credits): {used:g} of {quota:g} s "
                        "used",
                        user=user,
                    )
            started = await _bounded(
                self.ledger.start_session(
                    session_id,
                    user,
                    model,
                    config.instance,
                    now=time.time(),  # the quota reads above may have waited on a busy ledger
                    max_concurrent=limits.max_sessions_per_user,
                    lease=config.lease_seconds,
                )
            )
        except LedgerError as exc:
            self.metrics.ledger_errors += 1
            log.error("ledger unavailable at admission: %s", exc)
            return await self._refuse(
                request,
                ws,
                "ledger_error",
                codes.UPSTREAM_ERROR,
                "usage ledger unavailable",
                user=user,
            )
        if not started.ok:
            return await self._refuse(
                request,
                ws,
                "user_session_limit",
                codes.CONCURRENCY_LIMIT,
                f"Concurrent session limit reached for this user ({started.active} open, "
                f"limit {limits.max_sessions_per_user}).",
                user=user,
            )

        assert self._http is not None
        relay = Relay(
            RelayContext(config, self.ledger, self.metrics, self._http),
            ws,
            session_id=session_id,
            user=user,
            model=model,
            resolution=resolution,
            quota=quota,
            quota_since=since,
            client_address=client,
            early_room_info=request.query.get("livekit_early_room_info") == "true",
        )
        self.relays.add(relay)
        self._idle.clear()
        self.metrics.sessions_total += 1
        self.metrics.sessions_active = len(self.relays)
        try:
            await relay.run()
        finally:
            self.relays.discard(relay)
            self.metrics.sessions_active = len(self.relays)
            if not self.relays:
                self._idle.set()
        return ws
