"""Separate hosts for browser tests: Linux network namespaces joined by veth pairs.

`Hosts` builds three namespaces, each a host with its own interfaces, addresses and routes::

    browser 10.77.1.2 --- 10.77.1.1 router 10.77.2.1 --- 10.77.2.2 kernel

Chromium runs in ``browser`` (`chromium_wrapper` makes an executable that enters it), Jupyter in
``kernel``. `Hosts.route` lets the browser and the kernel reach each other through the router
(a remote server on your network), or not (the kernel is unroutable: only a `TcpForwarder` in the
router, like a hub's proxy, reaches it); `Hosts.block_udp` makes the router a firewall that lets
only TCP through between them. The router silently drops everything sent to `DROPPED` (a
blackhole route: no reply, no ICMP error), as a firewall that drops packets does. `TURN_IP`, an
address of the router's own that both hosts reach whatever the rest allows, is where a TURN
server runs (`turn_kit`), as a public one would.

The test process stays in its own namespace; `Netns.call` runs a function on a thread that has
entered a namespace (``setns``), so the test's HTTP requests and the forwarder's sockets belong to
that host. Needs root and iproute2 (`unavailable` says why not); everything is removed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

BROWSER_IP = "10.77.1.2"
ROUTER_BROWSER_SIDE = "10.77.1.1"
ROUTER_KERNEL_SIDE = "10.77.2.1"
KERNEL_IP = "10.77.2.2"
#: an address the router drops without a word
DROPPED = "10.77.9.9"
#: the router's address for a TURN server: reached from both hosts, routed or not
TURN_IP = "10.77.3.3"
_CLONE_NEWNET = 0x40000000


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root (CI runs these tests as root)"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    name = f"dwprobe{os.getpid()}"
    try:
        _ip("netns", "add", name)
        _ip("netns", "del", name)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns` does not work here: {exc}"
    return None


class Closing:
    """``with`` support for a test's server or network: leaving the block calls ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Netns:
    """One named network namespace (``ip netns``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: ThreadPoolExecutor | None = None

    @property
    def exec_prefix(self) -> list[str]:
        """A command prefix that runs a program in this namespace."""
        return ["ip", "netns", "exec", self.name]

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"setns({self.name}): {os.strerror(error)}")
        finally:
            os.close(fd)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on a thread inside this namespace (its sockets are this host's)."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, f"netns-{self.name}", initializer=self._enter)
        return self._thread.submit(function, *args).result()

    def entered_thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        """A daemon thread that enters this namespace, then runs ``target``."""

        def run() -> None:
            self._enter()
            target()

        return threading.Thread(target=run, name=name, daemon=True)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None


class Hosts(Closing):
    """The browser, router and kernel hosts; ``with Hosts() as hosts:`` builds and removes them."""

    def __init__(self) -> None:
        tag = f"dw{os.getpid() % 100000}"
        self.browser = Netns(f"{tag}b")
        self.router = Netns(f"{tag}r")
        self.kernel = Netns(f"{tag}k")
        self._made: list[Netns] = []
        self.routed = False
        self.udp_blocked = False

    def __enter__(self) -> Hosts:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        for ns in (self.browser, self.router, self.kernel):
            _ip("netns", "add", ns.name)
            self._made.append(ns)
            _ip("-n", ns.name, "link", "set", "lo", "up")
        pairs = (
            (self.browser, BROWSER_IP, ROUTER_BROWSER_SIDE),
            (self.kernel, KERNEL_IP, ROUTER_KERNEL_SIDE),
        )
        for index, (host, address, router_side) in enumerate(pairs):
            here, there = f"{host.name}v{index}", f"{self.router.name}v{index}"
            _ip("link", "add", here, "type", "veth", "peer", "name", there)
            _ip("link", "set", here, "netns", host.name)
            _ip("link", "set", there, "netns", self.router.name)
            _ip("-n", host.name, "addr", "add", f"{address}/24", "dev", here)
            _ip("-n", self.router.name, "addr", "add", f"{router_side}/24", "dev", there)
            _ip("-n", host.name, "link", "set", here, "up")
            _ip("-n", self.router.name, "link", "set", there, "up")
            # the dropped address and the TURN server are "out there", behind the router
            _ip("-n", host.name, "route", "add", f"{DROPPED}/32", "via", router_side)
            _ip("-n", host.name, "route", "add", f"{TURN_IP}/32", "via", router_side)
        _ip("-n", self.router.name, "route", "add", "blackhole", f"{DROPPED}/32")
        _ip("-n", self.router.name, "addr", "add", f"{TURN_IP}/32", "dev", "lo")
        subprocess.run(
            [*self.router.exec_prefix, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def route(self, routed: bool) -> None:
        """Let the browser and the kernel reach each other through the router, or not."""
        if routed == self.routed:
            return
        verb = "add" if routed else "del"
        _ip("-n", self.browser.name, "route", verb, "10.77.2.0/24", "via", ROUTER_BROWSER_SIDE)
        _ip("-n", self.kernel.name, "route", verb, "10.77.1.0/24", "via", ROUTER_KERNEL_SIDE)
        self.routed = routed

    def block_udp(self, blocked: bool) -> None:
        """Let only TCP through between the browser and the kernel (a firewall that drops
        UDP), or everything; traffic to the router's own addresses (`TURN_IP`) passes."""
        if blocked == self.udp_blocked:
            return
        verb = "add" if blocked else "del"
        for index, far_side in ((0, "10.77.2.0/24"), (1, "10.77.1.0/24")):
            inbound = f"{self.router.name}v{index}"
            _ip(
                "-n",
                self.router.name,
                "rule",
                verb,
                "iif",
                inbound,
                "to",
                far_side,
                "ipproto",
                "udp",
                "blackhole",
            )
        self.udp_blocked = blocked

    def close(self) -> None:
        for ns in reversed(self._made):
            ns.close()
            with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
                _ip("netns", "del", ns.name)  # its veth ends go with it
        self._made.clear()


class TcpForwarder:
    """A TCP forwarder on a host (a hub's proxy, an SSH tunnel): ``listen`` -> ``target``."""

    def __init__(self, host: Netns, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = host.entered_thread(self._run, f"forward-{listen[1]}")

    def start(self) -> TcpForwarder:
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"the forwarder did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._pipe_pair, *self.listen)
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _pipe_pair(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate ``process`` (a server a test started in a namespace), killing it after 10 s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def fetch_in(ns: Netns, url: str, timeout: float) -> tuple[int, bytes]:
    """GET ``url`` from host ``ns``: its status and body."""

    def get() -> tuple[int, bytes]:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())

    return ns.call(get)


def chromium_wrapper(ns: Netns, chromium: str, directory: Path | None = None) -> Path:
    """An executable that runs ``chromium`` inside ``ns`` (for Playwright's executable_path)."""
    folder = directory or Path(tempfile.mkdtemp(prefix="dw-netns-"))
    script = folder / "chromium-in-netns"
    script.write_text(f'#!/bin/sh\nexec ip netns exec {ns.name} {chromium} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script
