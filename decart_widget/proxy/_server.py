"""Running the proxy: `ProxyServer` (tests, notebooks) and `serve` (the command line).

`ProxyServer` runs on its own event loop in a daemon thread (``start()``/``stop()``, a context
manager), or on the caller's loop (``await astart()``/``await astop()``, an async context
manager). `serve` runs in the foreground until SIGINT/SIGTERM, then drains: ``/healthz`` turns
503, new clients get 1001, live sessions get ``drain_seconds`` to end before they are closed
with 1001.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets as _secrets
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from .._backends import Backend
from .._logging import add_secret, guard_library_loggers
from .._loop_thread import LoopThread
from ..protocol._urls import redact, url_host
from ._app import ProxyService
from ._auth import Authenticator, issue_token
from ._config import ProxyConfig
from ._ledger import Ledger, LedgerSession, period_start
from ._limits import Limits

log = logging.getLogger("decart_widget.proxy.server")

T = TypeVar("T")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
#: Connections the kernel queues for the proxy before it accepts them (capped by the system's
#: ``net.core.somaxconn``). aiohttp's default, 128, overflowed in issue 14's scale-out run (a
#: balancer opening sessions at 125 a second on a busy machine): dropped connections wait for
#: the client's SYN retry, a second or more.
LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class ProxyBackend:
    """A `Backend` that reaches the service through the proxy as one user: ``api_key`` is
    the user's proxy token, so `RealtimeSession` (or any Gen-A client) works unchanged."""

    api_url: str
    realtime_url: str
    api_key: str = dataclasses.field(repr=False)


class ProxyServer:
    """A signaling proxy in front of ``upstream`` (a `Backend`: the emulator or Decart).

    >>> emu = Emulator().start()                                  # doctest: +SKIP
    >>> proxy = ProxyServer(upstream=emu).start()                 # doctest: +SKIP
    >>> token = proxy.issue_token("alice")                        # doctest: +SKIP
    >>> f"{proxy.realtime_url}/v1/stream?model=lucy-2.1&token={token}"  # doctest: +SKIP

    Without ``secret`` (and without ``authenticate``) a random secret is generated; keyword
    arguments not named here are `ProxyConfig` fields (``drain_seconds``, ``heartbeat``, ...).
    """

    def __init__(
        self,
        upstream: Backend | None = None,
        *,
        config: ProxyConfig | None = None,
        secret: str | Sequence[str] | None = None,
        api_key: str | None = None,
        upstream_url: str | None = None,
        host: str | None = None,
        port: int | None = None,
        ledger: str | Ledger | None = None,
        limits: Limits | None = None,
        authenticate: Authenticator | None = None,
        **overrides: Any,
    ) -> None:
        base = config or ProxyConfig()
        changes: dict[str, Any] = dict(overrides)
        if upstream is not None:
            changes.setdefault("upstream_url", upstream.realtime_url)
            changes.setdefault("api_key", upstream.api_key)
        if upstream_url is not None:
            changes["upstream_url"] = upstream_url.rstrip("/")
        if api_key is not None:
            changes["api_key"] = api_key
        if secret is not None:
            changes["secrets"] = (secret,) if isinstance(secret, str) else tuple(secret)
        elif not base.secrets and authenticate is None:
            changes["secrets"] = (_secrets.token_urlsafe(32),)
        if host is not None or config is None:
            changes["host"] = host or "127.0.0.1"
        if port is not None or config is None:
            changes["port"] = port or 0
        if limits is not None:
            changes["limits"] = limits
        if isinstance(ledger, str):
            changes["ledger"] = ledger
        self.config = dataclasses.replace(base, **changes)
        self._ledger_obj = ledger if isinstance(ledger, Ledger) else None
        self._authenticate = authenticate
        self.service: ProxyService | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._thread = LoopThread(
            "decart-proxy", start_timeout=START_TIMEOUT, stop_timeout=STOP_TIMEOUT
        )

    # ---- where to connect ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy picks its port on start(): call start() first")
        return self._port

    @property
    def realtime_url(self) -> str:
        """The WebSocket base a client uses (``/v1/stream`` is appended by clients)."""
        return f"ws://{url_host(self.config.host)}:{self.port}"

    url = realtime_url

    @property
    def http_url(self) -> str:
        return f"http://{url_host(self.config.host)}:{self.port}"

    def stream_url(self, token: str, model: str = "lucy-2.1") -> str:
        """The full URL of a session: ``ws://.../v1/stream?model=...&token=...``."""
        from urllib.parse import urlencode

        return f"{self.realtime_url}/v1/stream?{urlencode({'model': model, 'token': token})}"

    def issue_token(self, user: str, ttl: float = 3600.0) -> str:
        """A token for ``user`` signed with this proxy's (first) secret."""
        if not self.config.secrets:
            raise RuntimeError("this proxy uses a custom authenticate hook: it has no secret")
        return issue_token(user, self.config.secrets[0], ttl)

    def backend_for(self, user: str, ttl: float = 3600.0) -> ProxyBackend:
        """A backend for `RealtimeSession` that connects through this proxy as ``user``."""
        return ProxyBackend(self.http_url, self.realtime_url, self.issue_token(user, ttl))

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def ledger(self) -> Ledger:
        if self.service is None:
            raise RuntimeError("the proxy is not running")
        return self.service.ledger

    # ---- async lifecycle (the caller's loop) --------------------------------------------------

    async def astart(self) -> ProxyServer:
        """Start serving on the running loop; returns self."""
        if self._runner is not None:
            return self
        for secret in (self.config.api_key, *self.config.secrets):
            add_secret(secret)  # scrubbed by value from every log record, whatever quotes it
        guard_library_loggers()
        service = ProxyService(
            self.config, authenticate=self._authenticate, ledger=self._ledger_obj
        )
        runner = web.AppRunner(service.app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        assert runner.server is not None
        service.guard.install(runner.server)
        site = web.TCPSite(runner, self.config.host, self.config.port, backlog=LISTEN_BACKLOG)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        sockets = getattr(site._server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1] if sockets else self.config.port
        self.service, self._runner = service, runner
        log.info("proxy serving at %s", self.realtime_url)
        return self

    async def astop(self, drain_seconds: float = 0.0) -> None:
        """Drain (``drain_seconds``), close every session with 1001 and stop serving."""
        runner, service = self._runner, self.service
        if runner is None or service is None:
            return
        await service.drain(drain_seconds)
        await runner.cleanup()
        self._runner = None
        self.service = None

    async def __aenter__(self) -> ProxyServer:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # ---- threaded lifecycle -------------------------------------------------------------------

    def start(self) -> ProxyServer:
        """Start serving on a background thread (no-op when running); returns self."""
        if self._thread.start(self.astart):
            self._thread.rename(f"decart-proxy-{self.port}")
        return self

    def stop(self, drain_seconds: float = 0.0) -> None:
        """Close every session (1001), stop serving and join the thread. Idempotent."""
        self._thread.stop(lambda: self.astop(drain_seconds), STOP_TIMEOUT + drain_seconds)

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def call(self, factory: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
        """Run a coroutine on the proxy's loop from another thread (after `start`)."""
        if not self._thread.running:
            raise RuntimeError("call() needs a proxy started with start()")
        return self._thread.call(factory, timeout)

    # ---- the ledger, from sync code -----------------------------------------------------------

    def sessions(self, user: str | None = None) -> list[LedgerSession]:
        """The ledger's sessions, newest first (threaded proxies only; else await
        ``proxy.ledger.sessions()``)."""
        return self.call(lambda: self.ledger.sessions(user))

    def usage(self, user: str) -> float:
        """Generation seconds of ``user`` in the current quota period."""
        since = period_start(self.config.limits.quota_period, time.time())
        return self.call(lambda: self.ledger.usage(user, since=since))

    def set_quota(self, user: str, seconds: float | None) -> None:
        self.call(lambda: self.ledger.set_quota(user, seconds))

    def metrics(self) -> str:
        """The ``/metrics`` text."""
        if self.service is None:
            raise RuntimeError("the proxy is not running")
        self.service.metrics.sessions_active = len(self.service.relays)
        return self.service.metrics.render()

    def __repr__(self) -> str:
        where = self.realtime_url if self._port is not None else "not started"
        return f"ProxyServer({where}, upstream={redact(self.config.upstream_url)!r})"


async def serve_async(
    config: ProxyConfig,
    *,
    authenticate: Authenticator | None = None,
    ledger: Ledger | None = None,
    ready: Callable[[ProxyServer], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM on the main thread), then drain."""
    server = ProxyServer(config=config, authenticate=authenticate, ledger=ledger)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
                installed.append(signum)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on POSIX
                pass
    try:
        await server.astart()
        if ready is not None:
            ready(server)
        await stop.wait()
        log.info("stopping: draining for up to %g s", config.drain_seconds)
        await server.astop(config.drain_seconds)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        if server.running:
            await server.astop()


def serve(
    config: ProxyConfig | None = None,
    *,
    authenticate: Authenticator | None = None,
    ledger: Ledger | None = None,
    ready: Callable[[ProxyServer], None] | None = None,
    **overrides: Any,
) -> None:
    """Run the proxy in the foreground until SIGINT/SIGTERM (the ``decart-widget proxy``
    command). Keyword arguments are `ProxyConfig` fields."""
    base = config or ProxyConfig()
    if overrides:
        base = dataclasses.replace(base, **overrides)
    asyncio.run(serve_async(base, authenticate=authenticate, ledger=ledger, ready=ready))
