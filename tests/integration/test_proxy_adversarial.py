"""The proxy against a hostile or broken world (issue 14's adversarial probe, kept as tests):
a service that refuses the proxy's own key, a client that drops during a ping flood, a password
in the upstream URL. The process-level probes (log redaction of library tracebacks, slow
upgrades at the file-descriptor limit) are in ``test_proxy_hardening.py``."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator

import pytest
import websockets
from proxy_kit import (
    ProxyFactory,
    closed_with,
    connect,
    prompt_round_trip,
    wait_for,
)

import decart_widget as dw
from decart_widget.emulator import Emulator
from decart_widget.protocol._errors import classify
from decart_widget.protocol._session import RetryPolicy
from decart_widget.proxy import codes, configure_logging

NO_RETRY = RetryPolicy(delays=())


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """The package's JSON log lines, as the command line configures them."""
    stream = io.StringIO()
    package_logger = logging.getLogger("decart_widget")
    saved = package_logger.level, package_logger.propagate
    handler = configure_logging("DEBUG", stream=stream)
    try:
        yield stream
    finally:
        package_logger.removeHandler(handler)
        package_logger.level, package_logger.propagate = saved  # other tests use caplog


def log_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# ---- defect 3: the service refusing the proxy's own key -----------------------------------------


async def test_the_service_refusing_the_proxys_key_is_a_server_error_not_the_users(
    proxy_factory: ProxyFactory,
) -> None:
    with captured_logs() as stream:
        proxy = await proxy_factory(api_key="dct_not_the_emulators_key_0000")
        async with await connect(proxy.stream_url(proxy.issue_token("ann"))) as ws:
            await ws.send(json.dumps({"type": "prompt", "prompt": "Anime"}))
            received: list[str] = []

            async def read() -> None:
                with contextlib.suppress(websockets.ConnectionClosed):
                    while True:
                        received.append(str(await ws.recv()))

            await asyncio.wait_for(read(), 10)
            code, reason = ws.close_code, ws.close_reason or ""
        await wait_for(lambda: proxy.service is not None and not proxy.service.relays)
    assert code == codes.UPSTREAM_ERROR, (code, reason)
    assert "misconfigured" in reason
    # Nothing the client reads may blame the user's credentials.
    for text in [reason, *received]:
        assert not isinstance(classify(text), dw.AuthenticationError), text
    [row] = await proxy.ledger.sessions("ann")
    assert row.end_reason == "upstream_key_refused"
    loud = [line for line in log_lines(stream) if line["event"] == "upstream_key_refused"]
    assert loud and loud[0]["level"] == "error"
    assert 'decart_proxy_session_ends_total{reason="upstream_key_refused"} 1' in proxy.metrics()


async def test_the_headless_client_gets_a_server_error_when_the_proxys_key_is_refused(
    proxy_factory: ProxyFactory,
) -> None:
    proxy = await proxy_factory(api_key="dct_not_the_emulators_key_0000")
    with pytest.raises(dw.DecartError) as caught:
        await dw.RealtimeSession.connect(
            backend=proxy.backend_for("ben"), prompt="Anime", retry=NO_RETRY, timeout=10
        )
    assert not isinstance(caught.value, dw.AuthenticationError), repr(caught.value)
    assert "misconfigured" in str(caught.value)


# ---- defect 4: a client dropping during a ping flood --------------------------------------------


async def test_a_client_dropping_during_a_ping_flood_is_client_lost(
    proxy_factory: ProxyFactory,
) -> None:
    with captured_logs() as stream:
        proxy = await proxy_factory()
        for attempt in range(5):
            user = f"flood{attempt}"
            ws = await connect(proxy.stream_url(proxy.issue_token(user)))
            await prompt_round_trip(ws, "Anime")
            for _ in range(2000):
                ws.transport.write(b"\x89\x80\x00\x00\x00\x00")  # masked empty pings, unread pongs
            ws.transport.abort()
            await wait_for(lambda: proxy.service is not None and not proxy.service.relays)
            [row] = await proxy.ledger.sessions(user)
            assert row.end_reason in ("client_lost", "client_closed"), row.end_reason
    problems = [line for line in log_lines(stream) if line["level"] in ("error", "critical")]
    assert not problems, problems
    assert "internal_error" not in proxy.metrics()


# ---- defect 5: a password in the upstream URL ---------------------------------------------------


async def test_a_password_in_the_upstream_url_reaches_no_log_line_or_repr(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    password = "pA55w0rd-in-the-url"
    upstream = emulator.realtime_url.replace("ws://", f"ws://platform:{password}@")
    with captured_logs() as stream:
        proxy = await proxy_factory(upstream_url=upstream, api_key=emulator.api_key)
        async with await connect(proxy.stream_url(proxy.issue_token("cat"))) as ws:
            await prompt_round_trip(ws, "Anime")  # the URL still works
    ready = [line for line in log_lines(stream) if line["event"] == "proxy ready"]
    assert ready and "platform:***@" in str(ready[0]["upstream_url"])
    assert password not in stream.getvalue()
    assert password not in repr(proxy) and password not in repr(proxy.config)


# ---- what aiohttp answers to frames that break RFC 6455 (documented in docs/proxy.md) -----------


def _client_frame(opcode: int, payload: bytes, *, rsv: int = 0, fin: bool = True) -> bytes:
    """One masked client frame, built by hand (no library would send these)."""
    mask = bytes([1, 2, 3, 4])
    head = bytes([(0x80 if fin else 0) | rsv | opcode, 0x80 | len(payload)])
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (_client_frame(0x1, b'{"type":"\xff"}'), 1007),  # text that is not UTF-8
        (_client_frame(0x1, b"{}", rsv=0x40), 1002),  # a reserved bit set
        (_client_frame(0x3, b"x"), 1002),  # an unknown opcode
        (_client_frame(0x9, b"x", fin=False), 1002),  # a fragmented ping
        (_client_frame(0x1, b'{"prompt":"x"}'), codes.MALFORMED_FRAME),  # well-formed, no type
    ],
)
async def test_frames_breaking_the_websocket_protocol_get_aiohttps_codes(
    proxy_factory: ProxyFactory, frame: bytes, code: int
) -> None:
    proxy = await proxy_factory()
    ws = await connect(proxy.stream_url(proxy.issue_token("eve")))
    await prompt_round_trip(ws, "Anime")
    ws.transport.write(frame)
    got, _ = await closed_with(ws)
    assert got == code
    await wait_for(lambda: proxy.service is not None and not proxy.service.relays)
    [row] = await proxy.ledger.sessions("eve")
    assert row.end_reason == (
        "malformed_frame" if code == codes.MALFORMED_FRAME else "client_error"
    )


@pytest.mark.parametrize("status", [401, 403])
async def test_an_upstream_handshake_refusing_the_key_is_a_server_error(
    proxy_factory: ProxyFactory, status: int
) -> None:
    """A service that refuses the key with HTTP 401/403 on the upgrade (second pass)."""
    from aiohttp import web

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=status, text="Invalid API key")

    app = web.Application()
    app.router.add_get("/v1/stream", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        proxy = await proxy_factory(upstream_url=f"ws://127.0.0.1:{port}", api_key="dct_wrong_key")
        async with await connect(proxy.stream_url(proxy.issue_token("fay"))) as ws:
            await ws.send(json.dumps({"type": "prompt", "prompt": "Anime"}))
            code, reason = await closed_with(ws)
        assert code == codes.UPSTREAM_ERROR and "misconfigured" in reason
        assert not isinstance(classify(reason), dw.AuthenticationError)
        await wait_for(lambda: proxy.service is not None and not proxy.service.relays)
        [row] = await proxy.ledger.sessions("fay")
        assert row.end_reason == "upstream_key_refused"
    finally:
        await runner.cleanup()


# ---- second pass: hostile frames through the proxy to the emulator ------------------------------


@pytest.mark.parametrize(
    ("frame", "outcome"),
    [
        # valid JSON, but no text: the emulator refuses the prompt; the session carries on
        ('{"type": "prompt", "prompt": "a\\ud800\\nb", "enhance_prompt": false}', "refused"),
        ('{"type": "set_image", "image_data": null, "prompt": "\\udfff"}', "refused"),
        ('{"type": "prompt", "prompt": ' + "[" * 100_000 + "]" * 100_000 + "}", 4008),
        ('{"type": "prompt", "prompt": "x", "enhance_prompt": ' + "9" * 5000 + "}", 4008),
        ('{"type": "prompt", "prompt": "x", "enhance_prompt": false, "n": 1e400}', "acked"),
    ],
    ids=["lone-surrogate-prompt", "lone-surrogate-image-prompt", "nested-100000", "int-5000-digits",
         "float-1e400"],
)  # fmt: skip
async def test_hostile_frames_never_end_in_an_internal_error(
    proxy_factory: ProxyFactory, emulator: Emulator, frame: str, outcome: object
) -> None:
    proxy = await proxy_factory()
    with captured_logs() as logs:
        ws = await connect(proxy.stream_url(proxy.issue_token("alice")))
        try:
            await ws.send(frame)
            if outcome == 4008:
                code, _ = await closed_with(ws)
                assert code == codes.MALFORMED_FRAME
            else:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert reply["success"] is (outcome == "acked"), reply
                assert (await prompt_round_trip(ws, "Anime"))["success"] is True
        finally:
            await ws.close()
        await wait_for(lambda: all(s.end_reason is not None for s in emulator.sessions))
    assert "Traceback" not in logs.getvalue() and '"level":"error"' not in logs.getvalue()
    assert all(s.end_reason != "error" for s in emulator.sessions)
    ends = [row.end_reason for row in await proxy.ledger.sessions()]
    assert "internal_error" not in ends, ends
