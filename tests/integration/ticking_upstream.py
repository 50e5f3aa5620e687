"""A control-only stand-in for Decart's realtime service, for the proxy's scale-out runs.

The emulator ticks only once a session's media is connected; thousands of WebRTC peers do not
fit on a test machine, and the proxy never sees the media anyway. This server speaks the control
half of docs/protocol.md on ``/v1/stream?api_key=&model=``: it sends ``session_id`` (a unique
``up_<n>``), acknowledges every ``prompt``, sends an integer cumulative ``generation_tick`` every
``--tick`` seconds and, after ``--ticks`` of them, ``generation_ended`` (reason ``timeout``) and a
close 1000 ``session_duration_limit``, as the service does at ``maxSessionDuration``. So every
session is bounded in time and ends with the same seconds on both sides.

``GET /sessions`` answers what it sent: ``{"up_1": {"seconds": 12, "ended": "timeout"}, ...}``
(``ended``: ``timeout``, ``closed`` by the peer, or null while open), so a run can compare the
ledger with the service's own count. Run it as a script; it prints its ``ws://`` base URL and
serves until its standard input closes::

    python tests/integration/ticking_upstream.py --key dct_scale --tick 1 --ticks 60
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from typing import Any

from aiohttp import WSMsgType, web


class Upstream:
    def __init__(self, key: str, tick: float, ticks: int) -> None:
        self.key = key
        self.tick = tick
        self.ticks = ticks
        self.sent: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, autoping=True)
        await ws.prepare(request)
        if request.query.get("api_key") != self.key:
            await ws.send_str(json.dumps({"type": "error", "error": "Invalid API key"}))
            await ws.close(code=4001, message=b"invalid_api_key")
            return ws
        sid = f"up_{next(self._ids)}"
        record: dict[str, Any] = {"seconds": 0, "ended": None, "prompts": 0}
        self.sent[sid] = record
        await ws.send_str(json.dumps({"type": "session_id", "session_id": sid}))
        ticker = asyncio.create_task(self._tick(ws, record))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("type") == "prompt":
                    record["prompts"] += 1
                    await ws.send_str(
                        json.dumps(
                            {
                                "type": "prompt_ack",
                                "prompt": data.get("prompt"),
                                "success": True,
                                "error": None,
                            }
                        )
                    )
        except (ConnectionError, RuntimeError):
            pass
        finally:
            ticker.cancel()
            if record["ended"] is None:
                record["ended"] = "closed"
        return ws

    async def _tick(self, ws: web.WebSocketResponse, record: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.tick
        try:
            for seconds in range(1, self.ticks + 1):
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at += self.tick
                # counted once handed to the socket: what a client may be billed for
                record["seconds"] = seconds
                await ws.send_str(json.dumps({"type": "generation_tick", "seconds": seconds}))
            record["ended"] = "timeout"
            await ws.send_str(
                json.dumps({"type": "generation_ended", "seconds": self.ticks, "reason": "timeout"})
            )
            await ws.close(code=1000, message=b"session_duration_limit")
        except (ConnectionError, RuntimeError):
            pass

    async def sessions(self, request: web.Request) -> web.Response:
        return web.json_response(self.sent)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", default="dct_scale")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between ticks")
    parser.add_argument("--ticks", type=int, default=60, help="ticks before the session ends")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    upstream = Upstream(args.key, args.tick, args.ticks)
    app = web.Application()
    app.router.add_get("/v1/stream", upstream.stream)
    app.router.add_get("/sessions", upstream.sessions)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"ws://127.0.0.1:{port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
