"""A platform's flow through the signaling proxy, end to end, with no account and no network.

    python examples/platform_flow.py

1. The "realtime service" is the local emulator (point the proxy at Decart in production).
2. The platform runs the proxy with its Decart key, a token secret and a usage ledger.
3. The platform's backend issues a short-lived token for a signed-in user.
4. The user's client (here the headless `RealtimeSession`; in a browser, the widget or any Gen-A
   client) connects to the proxy with ``?model=...&token=...``: it never sees the Decart key.
5. The platform reads what the user consumed from the ledger, sets a quota, and watches
   ``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time

import httpx
import websockets

import decart_widget as dw
from decart_widget.proxy import Limits, ProxyServer, issue_token

SECRET = "platform-secret-change-me-0123456789"


async def main() -> None:
    workdir = tempfile.mkdtemp(prefix="platform-flow-")
    emulator = dw.Emulator(tick_seconds=0.25).start()  # fast ticks, so the demo is short
    proxy = ProxyServer(
        upstream=emulator,  # in production: upstream=dw.Decart() (DECART_API_KEY)
        secret=SECRET,
        ledger=os.path.join(workdir, "ledger.sqlite3"),
        limits=Limits(max_sessions_per_user=2),
    )
    await proxy.astart()
    print(f"proxy at {proxy.realtime_url}/v1/stream, upstream {emulator.realtime_url}")
    try:
        # -- the platform's backend: a token for the signed-in user --------------------------
        token = issue_token("user-42", SECRET, ttl=600)
        print(f"token for user-42: {token[:24]}... (valid 10 minutes)")

        # -- the user's client: connect through the proxy, with the token as its key ---------
        backend = proxy.backend_for("user-42")  # realtime_url = the proxy, api_key = a token
        session = await dw.RealtimeSession.connect(
            model="lucy-2.1", source="synthetic", prompt="Anime style", backend=backend
        )
        frame = await session.next_frame()
        print(f"connected ({session.connection_state}), first frame {frame.shape}")
        await session.set(prompt="Cyberpunk neon city")
        print("prompt changed; acknowledged through the proxy")
        deadline = time.monotonic() + 10
        while session.generation_seconds < 4 and time.monotonic() < deadline:
            await session.next_frame()
        print(f"generated {session.generation_seconds} s")
        await session.disconnect()

        # -- a client without a valid token is refused, and nothing reaches the service ------
        async with websockets.connect(proxy.stream_url("not-a-token")) as ws:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.recv()
            print(f"bad token -> close {ws.close_code} {ws.close_reason!r}")

        # -- the platform's view: usage, quotas, health, metrics -----------------------------
        for row in await proxy.ledger.sessions("user-42"):
            print(
                f"ledger: {row.user} {row.model} {row.seconds:g} s in {row.ticks} ticks, "
                f"upstream session {row.upstream_session_id}, ended: {row.end_reason}"
            )
        await proxy.ledger.set_quota("user-42", 2)
        try:
            await dw.RealtimeSession.connect(prompt="Noir", backend=proxy.backend_for("user-42"))
        except dw.InsufficientCredits as exc:
            print(f"over quota -> {type(exc).__name__}: {exc}")
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"{proxy.http_url}/healthz")).json()
            print(f"/healthz: {health['status']}, ledger {health['ledger']}")
            metrics = (await http.get(f"{proxy.http_url}/metrics")).text
        for line in metrics.splitlines():
            if line.startswith(("decart_proxy_session_ends_total", "decart_proxy_generation")):
                print(f"/metrics: {line}")
    finally:
        await proxy.astop()
        emulator.stop()


if __name__ == "__main__":
    asyncio.run(main())
