"""An asyncio event loop on a daemon thread, for services that sync code starts and stops.

The emulator, the proxy and the widgets' kernel relay run this way, so they work the same from
plain Python, notebooks (whose own loop is busy) and async tests. `start` runs a startup coroutine
on the new loop and waits for it (re-raising its failure); `stop` runs a shutdown coroutine, then
cancels whatever is left, closes the loop and joins the thread: nothing is left behind.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("decart_widget.loop_thread")

T = TypeVar("T")
Factory = Callable[[], Coroutine[Any, Any, Any]]


class LoopThread:
    """One background loop; `start` and `stop` are idempotent and thread-safe."""

    def __init__(self, name: str, *, start_timeout: float = 30.0, stop_timeout: float = 30.0):
        self.name = name
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def start(self, startup: Factory) -> bool:
        """Run ``startup()`` on a new loop thread; False when already running."""
        with self._lock:
            if self._thread is not None:
                return False
            ready = threading.Event()
            failure: list[BaseException] = []
            thread = threading.Thread(
                target=self._serve, args=(startup, ready, failure), name=self.name, daemon=True
            )
            thread.start()
            if not ready.wait(self.start_timeout):
                raise RuntimeError(f"{self.name} did not start in time")
            if failure:
                thread.join(self.stop_timeout)
                raise failure[0]
            self._thread = thread
            return True

    def is_current(self) -> bool:
        """True when called from this loop's own thread (where blocking on it would deadlock)."""
        return self._thread is not None and threading.current_thread() is self._thread

    def rename(self, name: str) -> None:
        """Name the thread (e.g. with the port, known only once serving)."""
        if self._thread is not None:
            self._thread.name = name

    def stop(self, shutdown: Factory, timeout: float | None = None) -> bool:
        """Run ``shutdown()`` on the loop, then end it; False when not running."""
        with self._lock:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return False
            if threading.current_thread() is thread:
                raise RuntimeError(f"{self.name} cannot be stopped from its own loop")
            try:
                future = asyncio.run_coroutine_threadsafe(shutdown(), loop)
                future.result(timeout if timeout is not None else self.stop_timeout)
            except Exception:
                log.exception("%s: shutdown failed; stopping the loop anyway", self.name)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(self.stop_timeout)
                self._thread = None
                self._loop = None
            return True

    def call(self, factory: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
        """Run a coroutine on the loop from another thread and return its result."""
        if self._loop is None:
            raise RuntimeError(f"{self.name} is not running")
        return asyncio.run_coroutine_threadsafe(factory(), self._loop).result(timeout)

    def _serve(
        self, startup: Factory, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(startup())
            except BaseException as exc:
                failure.append(exc)
                return
            self._loop = loop
            ready.set()
            loop.run_forever()
        finally:
            _close(loop, self.name)
            ready.set()


def _close(loop: asyncio.AbstractEventLoop, name: str) -> None:
    try:
        leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if leftovers:
            log.debug("%s: cancelling %d leftover task(s)", name, len(leftovers))
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
