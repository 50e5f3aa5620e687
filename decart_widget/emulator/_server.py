"""`Emulator`: the local service's public face, and its lifecycle on a background thread.

`start()` runs aiohttp (and every aiortc peer) on a fresh event loop in a daemon thread named
``decart-emulator-<port>``, so it works the same from sync code, notebooks and async tests.
`stop()` closes every session (1001 "server_shutdown"), the listening socket, the app, pending
tasks and the executor, then joins the thread: nothing is left behind. `serve_forever` is the
``decart-widget emulator`` command.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from types import FrameType, TracebackType
from typing import Any

from aiohttp import web

from .._ice import validate_ice_servers
from .._logging import add_secret, guard_library_loggers
from .._loop_thread import LoopThread
from ..protocol._constants import MAX_IMAGE_BYTES
from ..protocol._errors import InvalidInput
from ..protocol._urls import redact_key, url_host
from ._app import EmulatorApp, PathOnlyAccessLogger, access_log
from ._config import DEFAULT_API_KEY, EmulatorConfig, Services
from ._faults import Faults
from ._livekit import RoomServer
from ._moderation import DEFAULT_BLOCKLIST
from ._records import EmulatedSession, Rejection
from ._tokens import CredentialError

log = logging.getLogger("decart_widget.emulator.server")

THREAD_PREFIX = "decart-emulator"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class Emulator:
    """A local, Decart-compatible realtime service (see docs/emulator.md).

    >>> with Emulator() as emu:          # doctest: +SKIP
    ...     emu.api_url, emu.realtime_url, emu.api_key
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        *,
        blocklist: Iterable[str] = DEFAULT_BLOCKLIST,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        max_concurrent_sessions: int = 4,
        credits_seconds: float | None = None,
        tick_seconds: float = 1.0,
        room_capacity: int | None = None,
        ice_servers: Iterable[Mapping[str, Any]] = (),
        media_connect_seconds: float | None = 15.0,
        handshake_timeout: float = 10.0,
        max_connections: int | None = None,
        max_connections_per_address: int | None = None,
    ) -> None:
        self._config = EmulatorConfig(
            host=host,
            port=port,
            api_key=api_key,
            blocklist=tuple(blocklist),
            max_image_bytes=max_image_bytes,
            max_concurrent_sessions=max_concurrent_sessions,
            credits_seconds=credits_seconds,
            tick_seconds=tick_seconds,
            room_capacity=room_capacity,
            ice_servers=tuple(validate_ice_servers(list(ice_servers))),
            media_connect_seconds=media_connect_seconds,
            handshake_timeout=handshake_timeout,
            max_connections=max_connections,
            max_connections_per_address=max_connections_per_address,
        )
        self._services = Services.create(self._config)
        self._thread = LoopThread(
            THREAD_PREFIX, start_timeout=START_TIMEOUT, stop_timeout=STOP_TIMEOUT
        )
        self._app: EmulatorApp | None = None
        self._runner: web.AppRunner | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Start serving (no-op when running); returns self. Raises if the port is taken."""
        if self._thread.start(self._startup):
            self._thread.rename(f"{THREAD_PREFIX}-{self._services.port}")
            atexit.register(self.stop)
            log.info("emulator serving at %s", self.api_url)
        return self

    def stop(self) -> None:
        """Close every session, the server and the loop; join the thread. Idempotent."""
        if self._thread.stop(self._shutdown):
            atexit.unregister(self.stop)
            log.info("emulator stopped")

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _startup(self) -> None:
        add_secret(self._config.api_key)  # scrubbed by value from every log record
        guard_library_loggers()  # aiohttp's parser errors quote the request line, key and all
        app = EmulatorApp(self._services)
        runner = web.AppRunner(
            app.app,
            access_log_class=PathOnlyAccessLogger,
            access_log=access_log,
            shutdown_timeout=2.0,
        )
        await runner.setup()
        assert runner.server is not None
        app.guard.install(runner.server)
        site = web.TCPSite(runner, self._config.host, self._config.port)
        try:
            await site.start()
        except BaseException:
            await app.guard.close()
            await runner.cleanup()
            raise
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self._services.port = sockets[0].getsockname()[1] if sockets else self._config.port
        self._app, self._runner = app, runner

    async def _shutdown(self) -> None:
        if self._app is not None:
            await self._app.close_sessions()
        if isinstance(self._services.rooms, RoomServer):
            await self._services.rooms.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._app is not None:
            await self._app.guard.close()
        self._app, self._runner = None, None

    # ---- where and how to connect ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread.running

    @property
    def port(self) -> int:
        if self._services.port:
            return self._services.port
        if self._config.port:
            return self._config.port
        raise RuntimeError("the emulator picks its port on start(): call start() first")

    @property
    def host(self) -> str:
        return self._config.host

    @property
    def api_url(self) -> str:
        return f"http://{url_host(self._config.host)}:{self.port}"

    @property
    def realtime_url(self) -> str:
        return f"ws://{url_host(self._config.host)}:{self.port}"

    @property
    def browser_realtime_url(self) -> str:
        """The realtime URL for a browser: bound to every interface (``host="0.0.0.0"``), the
        host is left as the wildcard, and the page puts in the host it was served from (the
        kernel's host as the browser reaches it; js/src/reach.ts), never the kernel's loopback."""
        if self._config.host in ("", "0.0.0.0", "::"):
            return f"ws://{'[::]' if self._config.host == '::' else '0.0.0.0'}:{self.port}"
        return self.realtime_url

    @property
    def api_key(self) -> str:
        return self._config.api_key

    @property
    def generations(self) -> str:
        """What ``/v1/stream`` speaks, in words (both generations share the URL and port)."""
        gen_a = "Gen-A (WebRTC offer/answer)"
        if self._services.rooms is None:
            return f"{gen_a}; Gen-B unavailable (no LiveKit room server)"
        return f"{gen_a} and Gen-B (LiveKit rooms at {self.realtime_url}/rtc)"

    @property
    def config(self) -> EmulatorConfig:
        return self._config

    # ---- faults, credits, time ------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """Fault injection, settable at runtime (see `decart_widget.emulator._faults`)."""
        return self._services.faults

    def drop_connections(self) -> int:
        """Abort every live session's socket now, as a network loss would (the client sees
        1006); returns how many were dropped. See also ``faults.drop_socket_after``."""
        app = self._app
        if app is None or not self._thread.running:
            return 0

        async def drop() -> int:
            return app.drop_sessions()

        return self._thread.call(drop, STOP_TIMEOUT)

    def set_credits(self, api_key: str, seconds: float | None) -> None:
        """Give a permanent key a balance of generation seconds (None: unlimited)."""
        self._services.credits.set(api_key, seconds)

    def credits(self, api_key: str | None = None) -> float | None:
        """Seconds left for a key (default: the emulator's key); None when unlimited."""
        return self._services.credits.remaining(api_key or self.api_key)

    def set_room_capacity(self, capacity: int | None) -> None:
        """How many Gen-B sessions may hold a room at once; the rest queue (0: hold every new
        session; None: no queue). Raising it moves waiting sessions into their rooms at once."""
        if capacity is not None and capacity < 0:
            raise ValueError("room capacity must be None or at least 0")
        queue = self._services.queue
        if not self._thread.running:
            queue.set_capacity(capacity)
            return

        async def change() -> None:
            queue.set_capacity(capacity)

        self._thread.call(change, STOP_TIMEOUT)

    @property
    def room_capacity(self) -> int | None:
        return self._services.queue.capacity

    @property
    def queued(self) -> list[str]:
        """Ids of the Gen-B sessions waiting for a room, first in line first."""
        return self._services.queue.waiting()

    def advance_time(self, seconds: float) -> None:
        """Move the emulator's token clock forward: client tokens expire without waiting."""
        self._services.tokens.advance(seconds)

    def bind_ice_servers(self, client_token: str, ice_servers: Iterable[Mapping[str, Any]]) -> None:
        """Give the emulator's own peers ``ice_servers`` in the sessions opened with
        ``client_token`` (one this emulator minted), instead of the emulator's ``ice_servers=``.

        How a widget hands its ICE servers (the list it gave its page, TURN credentials and all)
        to the automatic emulator in its process: they stay in the process, and go with the
        token's sessions only (docs/where-it-works.md). Raises `InvalidInput` for a list that is
        not ICE servers, or a token that is not a live client token of this emulator.
        """
        servers = validate_ice_servers(list(ice_servers))
        try:
            self._services.tokens.bind_ice_servers(client_token, servers)
        except CredentialError as exc:
            raise InvalidInput(f"bind_ice_servers: {exc.message}") from None

    # ---- inspection -----------------------------------------------------------------------------

    @property
    def sessions(self) -> list[EmulatedSession]:
        """Snapshots of every session seen, oldest first (live ones have ``end_reason`` None)."""
        return self._services.recorder.sessions()

    @property
    def rejections(self) -> list[Rejection]:
        """Connections to ``/v1/stream`` refused before a session started."""
        return self._services.recorder.rejections()

    def wait_until(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        """Block until ``predicate()`` is true (re-checked on every record change)."""
        self._services.recorder.wait_until(predicate, timeout)

    async def wait_until_async(
        self, predicate: Callable[[], object], timeout: float = 10.0
    ) -> None:
        """`wait_until` for async code: waits in a worker thread, the caller's loop runs on."""
        await asyncio.to_thread(self._services.recorder.wait_until, predicate, timeout)

    def wait_for_session(self, index: int = 0, timeout: float = 10.0) -> EmulatedSession:
        """The ``index``-th session (0: the first), waiting for it to open."""
        self.wait_until(lambda: len(self.sessions) > index, timeout)
        return self.sessions[index]

    def __repr__(self) -> str:
        where = self.api_url if self.running else "not started"
        return f"Emulator({where}, api_key={redact_key(self.api_key)!r})"


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8765,
    api_key: str | None = None,
    *,
    max_concurrent_sessions: int = 4,
    credits_seconds: float | None = None,
    room_capacity: int | None = None,
    ice_servers: Iterable[Mapping[str, Any]] = (),
) -> None:
    """Run an emulator until Ctrl+C / SIGTERM (the ``decart-widget emulator`` command)."""
    emulator = Emulator(
        host=host,
        port=port,
        api_key=api_key or DEFAULT_API_KEY,
        max_concurrent_sessions=max_concurrent_sessions,
        credits_seconds=credits_seconds,
        room_capacity=room_capacity,
        ice_servers=ice_servers,
    ).start()
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_signal)
    out = sys.stdout
    out.write(f"API URL:      {emulator.api_url}\n")
    out.write(f"Realtime URL: {emulator.realtime_url}\n")
    out.write(f"API key:      {emulator.api_key}\n")
    out.write(f"Serves:       {emulator.generations}\n")
    if room_capacity is not None:
        out.write(f"Queue:        Gen-B sessions beyond {room_capacity} in rooms wait in line\n")
    out.write("Press Ctrl+C to stop.\n")
    out.flush()
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
