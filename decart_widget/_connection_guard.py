"""Connection admission: a handshake deadline, connection caps, and the file-descriptor limit.

Anyone can open a TCP connection and send half a WebSocket upgrade (no token needed); aiohttp
would hold it for its keep-alive time (about an hour), and a few hundred of them exhaust the
process's file descriptors. `ConnectionGuard` bounds that, at no cost per frame:

* **Handshake deadline**: a connection with no request in progress — one that has not finished
  sending its first request, or an idle keep-alive one — is closed after ``handshake_timeout``
  seconds. A request in progress (a WebSocket session is one long request) is never cut.
* **Caps**: at most ``max_connections`` open connections (default: derived from the
  descriptor limit, two descriptors a session: the client's and the upstream's), and at most
  ``max_connections_per_address`` from one client address. At the total cap, a new connection
  takes the place of the oldest connection with no request in progress (half-sent upgrades
  first), so ``/healthz`` and real clients get in while a flood is cut; only when every
  connection is busy is the new one refused. A client being refused (bad token...) whose close
  reply the proxy is waiting for goes first of all. Behind a load balancer (``trust_forwarded``) the
  TCP peers are the balancers, so the per-address cap applies to the forwarded address instead,
  per request: over the cap, HTTP 429 before any upgrade.
* **Descriptor limit**: when ``accept()`` fails with "Too many open files", asyncio stops
  accepting for a second; the guard then closes the oldest idle connections to make room, and
  logs one ``file_descriptors_exhausted`` warning (at most one every 30 s, with counts) instead
  of a traceback a second. Open sessions carry on throughout.

Refusals and evictions are logged as ``connections_refused`` (at most one line every 30 s, with
counts since the last) and counted in ``/metrics``.

The proxy (`decart_widget.proxy`) and the emulator (`decart_widget.emulator`, the embedded
default upstream, so it gets the same care) each install one, each with its own logger.

`install` hooks the guard into an aiohttp `web.Server` (its ``connection_made`` /
``connection_lost``) and the loop's exception handler; `middleware` marks requests in progress.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

try:
    import resource
except ImportError:  # pragma: no cover - Windows: no descriptor limit to read or raise
    resource = None  # type: ignore[assignment]

log = logging.getLogger("decart_widget.proxy.guard")  # the proxy's; the emulator passes its own

#: Descriptors kept for everything but client connections: the process's own (listening
#: socket, ledger, logs...) and a burst of accepted connections not yet refused (asyncio accepts
#: up to the listen backlog at a time: the emulator's is aiohttp's 128; the proxy's is 1,024,
#: `decart_widget.proxy._server.LISTEN_BACKLOG`, and a burst beyond this reserve meets the
#: descriptor-limit fallback above instead).
RESERVED_DESCRIPTORS = 64 + 128
#: At most one log line of each kind this often (seconds); the next one carries the counts.
LOG_EVERY = 30.0
_ACCEPT_FAILED = "socket.accept() out of system resource"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def descriptor_limit() -> int | None:
    """The process's soft limit on open files, or None when unlimited (or unknown)."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def raise_descriptor_limit(ceiling: int = 1 << 20) -> int | None:
    """Raise the soft limit on open files to the hard limit (as servers do); the new limit."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return descriptor_limit()


def default_max_connections(limit: int | None) -> int | None:
    """The total cap for a descriptor limit: two descriptors a session, some kept in reserve."""
    if limit is None:
        return None
    return max(16, (limit - RESERVED_DESCRIPTORS) // 2)


@dataclass(slots=True)
class _Connection:
    transport: Any
    address: str | None
    busy: int = 0
    served: bool = False


class _Throttled:
    """Counts of an event, logged at most once every `LOG_EVERY` seconds."""

    def __init__(self, event: str, logger: logging.Logger) -> None:
        self.event = event
        self.log = logger
        self.counts: collections.Counter[str] = collections.Counter()
        self._last = -LOG_EVERY

    def add(self, reason: str, **fields: Any) -> None:
        self.counts[reason] += 1
        now = time.monotonic()
        if now - self._last >= LOG_EVERY:
            self._last = now
            self.log.warning(self.event, extra={"fields": {**dict(self.counts), **fields}})
            self.counts.clear()


class ConnectionGuard:
    """See the module docstring. ``address_of(request)`` gives a request's client address
    (the forwarded one behind a trusted balancer); ``metrics_prefix`` names `render`'s series
    (``<prefix>_connections_open``...)."""

    def __init__(
        self,
        *,
        handshake_timeout: float,
        max_connections: int | None,
        max_connections_per_address: int | None,
        trust_forwarded: bool,
        address_of: Callable[[web.Request], str | None],
        logger: logging.Logger = log,
        metrics_prefix: str = "decart_proxy",
    ) -> None:
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections or None
        self.max_per_address = max_connections_per_address or None
        self.trust_forwarded = trust_forwarded
        self._address_of = address_of
        self._connections: dict[RequestHandler, _Connection] = {}
        self._idle: collections.OrderedDict[RequestHandler, float] = collections.OrderedDict()
        #: Connections being refused (waiting for a close reply): evicted before idle ones.
        self._refusing: collections.OrderedDict[RequestHandler, None] = collections.OrderedDict()
        self._per_address: collections.Counter[str | None] = collections.Counter()
        self._forwarded: collections.Counter[str | None] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.metrics_prefix = metrics_prefix
        self._refusals = _Throttled("connections_refused", logger)
        self._exhaustion = _Throttled("file_descriptors_exhausted", logger)
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_handler: Any = None

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # ---- installing ---------------------------------------------------------------------------

    def install(self, server: web.Server) -> None:
        """Hook into ``server`` and the running loop; start the deadline sweep."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: Any) -> None:
            if self._admit(handler, transport):
                made(handler, transport)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._forget(handler)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_exception)
        self._sweeper = loop.create_task(self._sweep(), name="decart-proxy-guard")

    async def close(self) -> None:
        """Stop the sweep and give the loop its exception handler back."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._loop is not None:
            self._loop.set_exception_handler(self._previous_handler)
            self._loop = None

    # ---- connections --------------------------------------------------------------------------

    def _admit(self, handler: RequestHandler, transport: Any) -> bool:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) and peer else None
        if (
            not self.trust_forwarded
            and self.max_per_address is not None
            and self._per_address[address] >= self.max_per_address
        ):
            self._refuse(transport, "per_address", address=address)
            return False
        at_cap = self.max_connections is not None and len(self._connections) >= self.max_connections
        if at_cap and not self._evict_idle(1, "evicted_at_cap"):
            self._refuse(transport, "max_connections", address=address)
            return False
        self._connections[handler] = _Connection(transport, address)
        self._per_address[address] += 1
        self._idle[handler] = time.monotonic()
        return True

    def _forget(self, handler: RequestHandler) -> None:
        connection = self._connections.pop(handler, None)
        if connection is None:
            return
        self._idle.pop(handler, None)
        self._refusing.pop(handler, None)
        self._per_address[connection.address] -= 1
        if self._per_address[connection.address] <= 0:
            del self._per_address[connection.address]

    def _refuse(self, transport: Any, reason: str, **fields: Any) -> None:
        self.refused[reason] += 1
        # Not now: aiohttp's handler task for this connection is scheduled right after this
        # call and expects the connection to be there when it starts.
        asyncio.get_running_loop().call_soon(transport.abort)
        self._refusals.add(reason, open_connections=len(self._connections), **fields)

    def refusing(self, request: web.Request) -> None:
        """The request is being refused: its connection may be evicted first."""
        if request.protocol in self._connections:
            self._refusing[request.protocol] = None

    def _evict_idle(self, count: int, reason: str) -> int:
        """Close up to ``count`` connections being refused, then with no request in progress,
        oldest first."""
        evicted = 0
        while evicted < count and (self._refusing or self._idle):
            if self._refusing:
                handler, _ = self._refusing.popitem(last=False)
            else:
                handler, _ = self._idle.popitem(last=False)
            connection = self._connections.get(handler)
            if connection is None:
                continue
            self._close(connection)
            self.refused[reason] += 1
            evicted += 1
        if evicted:
            self._refusals.add(reason, open_connections=len(self._connections))
        return evicted

    @staticmethod
    def _close(connection: _Connection) -> None:
        # A half-sent request gets a reset; an idle keep-alive connection a normal close.
        if connection.served:
            connection.transport.close()
        else:
            connection.transport.abort()

    async def _sweep(self) -> None:
        period = max(0.05, min(1.0, self.handshake_timeout / 4))
        while True:
            await asyncio.sleep(period)
            cutoff = time.monotonic() - self.handshake_timeout
            expired = 0
            while self._idle:
                handler, since = next(iter(self._idle.items()))
                if since > cutoff:
                    break
                del self._idle[handler]
                connection = self._connections.get(handler)
                if connection is not None:
                    self._close(connection)
                    expired += 1
            if expired:
                self.refused["handshake_timeout"] += expired
                self._refusals.add("handshake_timeout", open_connections=len(self._connections))

    # ---- requests -----------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Mark the connection busy while a request is in progress; the forwarded-address cap."""
        connection = self._connections.get(request.protocol)
        if connection is not None:
            connection.busy += 1
            connection.served = True
            self._idle.pop(request.protocol, None)
        forwarded: str | None = None
        counted = False
        try:
            if self.trust_forwarded and self.max_per_address is not None:
                forwarded = self._address_of(request)
                if self._forwarded[forwarded] >= self.max_per_address:
                    self.refused["per_address"] += 1
                    self._refusals.add("per_address", address=forwarded)
                    return web.Response(
                        status=429,
                        text="too many connections from this address\n",
                        headers={"Retry-After": "5"},
                    )
                self._forwarded[forwarded] += 1
                counted = True
            return await handler(request)
        except ConnectionResetError:
            transport = request.transport
            if transport is not None and not transport.is_closing():
                raise
            # Closed under the handler (evicted, or the client left) before it could answer:
            # nothing to send and nothing to log (aiohttp would log a traceback).
            return web.Response(status=503)
        finally:
            if counted:
                self._forwarded[forwarded] -= 1
                if self._forwarded[forwarded] <= 0:
                    del self._forwarded[forwarded]
            if connection is not None:
                connection.busy -= 1
                self._refusing.pop(request.protocol, None)
                if connection.busy == 0 and request.protocol in self._connections:
                    self._idle[request.protocol] = time.monotonic()

    # ---- the descriptor limit -----------------------------------------------------------------

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_FAILED:
            evicted = self._evict_idle(max(8, len(self._idle) // 10), "evicted_fd_limit")
            self.refused["fd_limit"] += 1
            self._exhaustion.add(
                "accept_failed",
                error=str(context.get("exception") or ""),
                open_connections=len(self._connections),
                evicted=evicted,
                fd_limit=descriptor_limit(),
            )
            return
        if self._previous_handler is not None:
            self._previous_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    # ---- metrics ------------------------------------------------------------------------------

    def render(self) -> str:
        """Prometheus text for the connection counters."""
        name = self.metrics_prefix
        lines = [
            f"# HELP {name}_connections_open Open client connections (any state).",
            f"# TYPE {name}_connections_open gauge",
            f"{name}_connections_open {len(self._connections)}",
            f"# HELP {name}_connections_refused_total Connections refused or closed by the "
            "guard, by reason.",
            f"# TYPE {name}_connections_refused_total counter",
        ]
        for reason, count in sorted(self.refused.items()):
            lines.append(f'{name}_connections_refused_total{{reason="{reason}"}} {count}')
        return "\n".join(lines) + "\n"
