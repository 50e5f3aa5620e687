"""The proxy on loopback in front of the emulator: sessions, admission, closing, limits."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import time
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from PIL import Image
from proxy_kit import (
    SECRET,
    WAIT,
    ProxyFactory,
    closed_with,
    connect,
    live_upstream_sessions,
    prompt_round_trip,
    receive_type,
    wait_for,
)

import decart_widget as dw
from decart_widget.emulator import Emulator
from decart_widget.protocol._session import RetryPolicy
from decart_widget.proxy import Limits, codes, issue_token
from decart_widget.proxy._ledger import LedgerError
from decart_widget.proxy._ledger_sqlite import SQLiteLedger

NO_RETRY = RetryPolicy(delays=())


# ---- a full media session -----------------------------------------------------------------------


async def test_a_full_media_session_through_the_proxy(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    ticks: list[int] = []
    session = await dw.RealtimeSession.connect(
        model="lucy-2.1", prompt="Anime style", backend=proxy.backend_for("alice"), retry=NO_RETRY
    )
    try:
        session.on("generation_tick", ticks.append)
        frame = await session.next_frame()
        assert frame.shape == (624, 1088, 3)
        await session.set(prompt="Noir film")
        await wait_for(lambda: len(ticks) >= 3, what="three ticks")
        upstream_id = session.session_id
    finally:
        await session.disconnect()

    # The upstream saw the proxy's key, the prompts, and media; never the user's token.
    record = emulator.sessions[-1]
    assert record.key_kind == "permanent"
    assert record.prompts_applied[:2] == ["Anime style", "Noir film"]
    assert record.frames_received > 0 and record.frames_sent > 0
    assert record.id == upstream_id
    await wait_for(lambda: emulator.sessions[-1].end_reason is not None, what="upstream end")

    # The ledger holds the session, final, with every tick the client saw.
    [row] = await proxy.ledger.sessions("alice")
    assert row.upstream_session_id == upstream_id
    assert row.end_reason == "client_closed" and row.ended_at is not None
    assert row.seconds >= ticks[-1] and row.ticks >= len(ticks)
    metrics = proxy.metrics()
    assert 'decart_proxy_session_ends_total{reason="client_closed"} 1' in metrics
    assert "decart_proxy_generation_seconds_total 0\n" not in metrics


async def test_frames_are_forwarded_unchanged_and_buffered_until_upstream_opens(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    # Sent at once, before the upstream connection can be open: buffered, then in order.
    odd = '{"type":"prompt", "prompt":"Sketch \\u00e9", "enhance_prompt":false, "extra":[1,2]}'
    async with await connect(proxy.stream_url(proxy.issue_token("bob"))) as ws:
        await ws.send(odd)
        await ws.send(json.dumps({"type": "some_future_message", "x": 1}))
        await ws.send(json.dumps({"type": "prompt", "prompt": "Invert", "enhance_prompt": False}))
        first = await receive_type(ws, "prompt_ack")
        second = await receive_type(ws, "prompt_ack")
        assert (first["prompt"], second["prompt"]) == ("Sketch é", "Invert")
    assert emulator.sessions[-1].prompts_applied == ["Sketch é", "Invert"]


async def test_a_prompt_and_its_ack_are_one_log_line(
    proxy_factory: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="decart_widget.proxy.session")
    proxy = await proxy_factory()
    async with await connect(proxy.stream_url(proxy.issue_token("erin"))) as ws:
        assert (await prompt_round_trip(ws, "Noir"))["success"] is True
        assert (await prompt_round_trip(ws, "Noir"))["success"] is True  # the same text twice
    await wait_for(lambda: not proxy.service or not proxy.service.relays, what="relay end")
    events = [
        (record.getMessage(), getattr(record, "fields", {}))
        for record in caplog.records
        if record.name == "decart_widget.proxy.session"
    ]
    prompts = [fields for name, fields in events if name == "prompt"]
    assert [(f["prompt"], f["success"], f["user"]) for f in prompts] == [
        ("Noir", True, "erin"),
        ("Noir", True, "erin"),
    ]
    assert all(isinstance(f["ack_ms"], float) and f["ack_ms"] >= 0 for f in prompts)
    assert "prompt_ack" not in [name for name, _ in events]  # folded into the prompt's line
    assert [name for name, _ in events][-1] == "session_closed"


async def test_model_is_url_encoded_and_only_model_and_resolution_are_forwarded(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    token = proxy.issue_token("carol")
    url = f"{proxy.realtime_url}/v1/stream?model=lucy-2.1&resolution=720p&token={token}"
    async with await connect(
        url + "&user_agent=evil&api_key=dct_client_own_key",
        additional_headers={"Origin": "https://app.example"},
    ) as ws:
        await prompt_round_trip(ws, "Anime")
        record = emulator.sessions[-1]
        assert (record.model, record.resolution, record.user_agent) == ("lucy-2.1", "720p", None)
        assert record.key_kind == "permanent" and record.origin is None

    weird = "lucy-2.1&api_key=x/../?#"
    async with await connect(proxy.stream_url(token, model=weird)) as ws:
        error = await receive_type(ws, "error")
        code, reason = await closed_with(ws)
    # The emulator does not know the model: its error and close pass through, and it saw the
    # exact name (so the name was encoded, not interpolated).
    assert "Unknown model" in error["error"]
    assert (code, reason) == (4004, "invalid_model")
    assert emulator.rejections[-1].model == weird


async def test_the_token_is_accepted_as_api_key_and_as_a_bearer_header(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    token = proxy.issue_token("dave")
    async with await connect(
        f"{proxy.realtime_url}/v1/realtime?model=lucy-2.1&api_key={token}"
    ) as ws:
        assert (await prompt_round_trip(ws, "Neon"))["success"] is True
    headers = {"Authorization": f"Bearer {token}"}
    async with await connect(
        f"{proxy.realtime_url}/v1/stream?model=lucy-2.1", additional_headers=headers
    ) as ws:
        assert (await prompt_round_trip(ws, "Neon"))["success"] is True


# ---- admission ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_token", "why"),
    [
        (lambda: None, "no token"),
        (lambda: "dwp1.garbage.token", "bad token signature"),
        (lambda: issue_token("eve", "some-other-secret-0123456789"), "bad token signature"),
        (lambda: issue_token("eve", SECRET, ttl=60, now=time.time() - 120), "token expired"),
    ],
)
async def test_refused_clients_get_4001_and_no_upstream_is_opened(
    emulator: Emulator, proxy_factory: ProxyFactory, make_token: Any, why: str
) -> None:
    proxy = await proxy_factory()
    token = make_token()
    url = f"{proxy.realtime_url}/v1/stream?model=lucy-2.1" + (f"&token={token}" if token else "")
    async with await connect(url) as ws:
        code, reason = await closed_with(ws)
    assert code == codes.UNAUTHORIZED
    assert reason == f"Unauthorized: {why}"
    assert emulator.sessions == [] and emulator.rejections == []
    assert 'decart_proxy_refusals_total{reason="unauthorized"} 1' in proxy.metrics()


async def test_the_headless_client_raises_authentication_error_at_once(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    backend = proxy.backend_for("eve")
    bad = type(backend)(backend.api_url, backend.realtime_url, "dwp1.not.valid")
    started = time.monotonic()
    with pytest.raises(dw.AuthenticationError, match="Unauthorized"):
        await dw.RealtimeSession.connect(backend=bad, prompt="Anime")
    assert time.monotonic() - started < 5  # not retried
    assert emulator.sessions == []


async def test_origins_models_and_resolutions_are_checked(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory(
        allowed_origins=("https://app.example",), allowed_models=("lucy-2.1",)
    )
    token = proxy.issue_token("frank")
    cases = [
        ({"Origin": "https://evil.example"}, "lucy-2.1", "", codes.UNAUTHORIZED, "origin"),
        ({"Origin": "https://app.example"}, "lucy-2.5", "", codes.BAD_REQUEST, "invalid model"),
        ({"Origin": "https://app.example"}, "", "", codes.BAD_REQUEST, "missing"),
        ({"Origin": "https://app.example"}, "lucy-2.1", "&resolution=8k%20", 4000, "resolution"),
    ]
    for headers, model, extra, want_code, want_reason in cases:
        url = f"{proxy.realtime_url}/v1/stream?model={model}&token={token}{extra}"
        async with await connect(url, additional_headers=headers) as ws:
            code, reason = await closed_with(ws)
        assert code == want_code and want_reason in reason, (code, reason)
    assert emulator.sessions == []
    async with await connect(
        proxy.stream_url(token), additional_headers={"Origin": "https://app.example"}
    ) as ws:
        assert (await prompt_round_trip(ws, "Anime"))["success"] is True


# ---- closing ------------------------------------------------------------------------------------


async def test_the_concurrency_limit_reaches_the_client_as_4013_with_its_reason(
    proxy_factory: ProxyFactory,
) -> None:
    small = Emulator(tick_seconds=0.05, max_concurrent_sessions=1).start()
    try:
        proxy = await proxy_factory(upstream=small)
        async with await connect(proxy.stream_url(proxy.issue_token("gina"))) as first:
            await prompt_round_trip(first, "Anime")
            async with await connect(proxy.stream_url(proxy.issue_token("hank"))) as second:
                code, reason = await closed_with(second)
            assert code == codes.CONCURRENCY_LIMIT
            assert reason == "Concurrent session limit reached."
            # The headless client hears it at once, as a typed error, without retrying.
            started = time.monotonic()
            with pytest.raises(dw.ConcurrencyLimit):
                await dw.RealtimeSession.connect(backend=proxy.backend_for("ivan"), prompt="x")
            assert time.monotonic() - started < 5
            assert (await prompt_round_trip(first, "Noir"))["success"] is True
        [row] = [r for r in await proxy.ledger.sessions() if r.user == "hank"]
        assert row.end_reason == "concurrency_limit"
    finally:
        small.stop()


async def test_upstream_dying_mid_session_tells_the_client_and_finalises_the_ledger(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    emulator.faults.drop_socket_after = 1.0
    ticks: list[int] = []
    errors: list[Exception] = []
    session = await dw.RealtimeSession.connect(  # Gen-A: its media loss is a peer connection's
        backend=proxy.backend_for("judy"), prompt="Anime", retry=NO_RETRY, transport="webrtc"
    )
    session.on("generation_tick", ticks.append)
    session.on("error", errors.append)
    try:
        await wait_for(lambda: session.connection_state == "disconnected", what="the loss")
    finally:
        await session.disconnect()
    # Told either by the proxy's close (1011 "upstream connection lost") or, when the dropped
    # server session's media stops first, by the peer connection closing: both are the loss.
    assert errors and isinstance(errors[-1], dw.ConnectionLost)
    told = str(errors[-1])
    assert ("1011" in told and "upstream connection lost" in told) or "peer connection" in told
    [row] = await proxy.ledger.sessions("judy")
    assert row.end_reason == "upstream_lost" and row.ended_at is not None
    assert ticks and row.seconds >= ticks[-1]


async def test_a_vanished_client_closes_the_upstream_within_a_second(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    ws = await connect(proxy.stream_url(proxy.issue_token("kim")))
    await prompt_round_trip(ws, "Anime")
    assert live_upstream_sessions(emulator) == 1
    ws.transport.abort()  # no close frame: the client process died
    started = time.monotonic()
    await wait_for(lambda: live_upstream_sessions(emulator) == 0, 1.0, "the upstream to close")
    assert time.monotonic() - started < 1.0
    await wait_for(lambda: not proxy.service or not proxy.service.relays, what="relay end")
    [row] = await proxy.ledger.sessions("kim")
    assert row.end_reason in ("client_lost", "client_closed")


async def test_a_normal_close_by_either_side_closes_the_other(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    async with await connect(proxy.stream_url(proxy.issue_token("lee"))) as ws:
        await prompt_round_trip(ws, "Anime")
        await ws.close(code=4321, reason="user left")
    await wait_for(lambda: emulator.sessions[-1].close_code is not None, what="upstream close")
    assert emulator.sessions[-1].close_code == 4321


async def test_shutdown_closes_every_session_with_1001(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    clients = [await connect(proxy.stream_url(proxy.issue_token(f"u{i}"))) for i in range(3)]
    for ws in clients:
        await prompt_round_trip(ws, "Anime")
    assert proxy.service is not None
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{proxy.http_url}/healthz")).json()["sessions"] == 3
        drain = asyncio.create_task(proxy.service.drain(WAIT))
        await wait_for(lambda: proxy.service is not None and proxy.service.draining)
        health = await http.get(f"{proxy.http_url}/healthz")
        assert health.status_code == 503 and health.json()["status"] == "draining"
        async with await connect(proxy.stream_url(proxy.issue_token("late"))) as late:
            assert await closed_with(late) == (1001, "proxy shutting down")
        await clients[0].close()  # one session ends by itself while draining
        await proxy.astop(0.0)
        await drain
    for ws in clients[1:]:
        assert await closed_with(ws) == (1001, "proxy shutting down")
    await wait_for(lambda: live_upstream_sessions(emulator) == 0, what="upstreams closed")


async def test_an_unreachable_upstream_gives_1011(proxy_factory: ProxyFactory) -> None:
    from proxy_kit import free_port

    proxy = await proxy_factory(
        upstream_url=f"ws://127.0.0.1:{free_port()}", api_key="dct_x", upstream_connect_timeout=2
    )
    async with await connect(proxy.stream_url(proxy.issue_token("mia"))) as ws:
        await ws.send(json.dumps({"type": "prompt", "prompt": "Anime"}))
        code, reason = await closed_with(ws)
    assert code == 1011 and reason.startswith("upstream unavailable")


# ---- limits -------------------------------------------------------------------------------------


async def test_oversized_and_malformed_frames_close_only_that_client(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    limit = proxy.config.limits.max_frame_bytes
    bystander = await connect(proxy.stream_url(proxy.issue_token("nina")))
    await prompt_round_trip(bystander, "Anime")
    big_image = base64.b64encode(b"\0" * (10 * 1024 * 1024 + 3)).decode()
    cases: list[tuple[str | bytes, int, str]] = [
        ('{"type":"prompt","prompt":"' + "x" * limit + '"}', 4009, "frame too big"),
        (json.dumps({"type": "set_image", "image_data": big_image}), 4009, "image too large"),
        ("this is not json", 4008, "malformed frame"),
        ('["type", "prompt"]', 4008, "malformed frame"),
        ('{"type": "prompt", "prompt": 42}', 4008, "malformed frame"),
        (b"\x00\x01binary", 4008, "binary frames are not supported"),
    ]
    for frame, want_code, want_reason in cases:
        async with await connect(proxy.stream_url(proxy.issue_token("oscar"))) as ws:
            await prompt_round_trip(ws, "Anime")
            with contextlib.suppress(websockets.ConnectionClosed):  # closed while still sending
                await ws.send(frame)
            code, reason = await closed_with(ws)
        assert code == want_code and want_reason in reason, (code, reason)
    # Everyone else keeps going.
    assert (await prompt_round_trip(bystander, "Noir"))["success"] is True
    await bystander.close()
    ends = proxy.metrics()
    assert 'decart_proxy_session_ends_total{reason="frame_too_big"} 2' in ends
    assert 'decart_proxy_session_ends_total{reason="malformed_frame"} 4' in ends


async def test_a_10_mb_image_passes(emulator: Emulator, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory()
    noise = np.random.default_rng(0).integers(0, 255, (1800, 1800, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="BMP")
    data = buffer.getvalue()[: 10 * 1024 * 1024]
    assert len(data) == 10 * 1024 * 1024 or len(data) > 9 * 1024 * 1024
    message = {"type": "set_image", "image_data": base64.b64encode(data).decode(), "prompt": "x"}
    async with await connect(proxy.stream_url(proxy.issue_token("pam"))) as ws:
        await ws.send(json.dumps(message))
        ack = await receive_type(ws, "set_image_ack", timeout=30)
    assert isinstance(ack["success"], bool)  # it reached the upstream, which answered


async def test_the_prompt_rate_is_limited_per_session(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory(limits=Limits(prompt_rate=0.5, prompt_burst=3))
    async with await connect(proxy.stream_url(proxy.issue_token("quinn"))) as ws:
        await prompt_round_trip(ws, "p0")
        for i in range(1, 4):
            await ws.send(json.dumps({"type": "prompt", "prompt": f"p{i}"}))
        code, reason = await closed_with(ws)
    assert code == codes.RATE_LIMITED and "Too many prompts" in reason
    # The three within the burst went through, in order; the fourth never left the proxy.
    await wait_for(lambda: len(emulator.sessions[-1].prompts_applied) == 3, what="3 prompts")
    assert emulator.sessions[-1].prompts_applied == ["p0", "p1", "p2"]
    # Another session of the same user has its own bucket.
    async with await connect(proxy.stream_url(proxy.issue_token("quinn"))) as ws:
        assert (await prompt_round_trip(ws, "again"))["success"] is True


async def test_concurrent_sessions_per_user_are_limited(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory(limits=Limits(max_sessions_per_user=2))
    token = proxy.issue_token("rita")
    first = await connect(proxy.stream_url(token))
    second = await connect(proxy.stream_url(token))
    for ws in (first, second):
        await prompt_round_trip(ws, "Anime")
    upstreams = len(emulator.sessions)
    async with await connect(proxy.stream_url(token)) as third:
        code, reason = await closed_with(third)
    assert code == codes.CONCURRENCY_LIMIT
    assert reason == "Concurrent session limit reached for this user (2 open, limit 2)."
    assert len(emulator.sessions) == upstreams  # no upstream was opened for it
    async with await connect(proxy.stream_url(proxy.issue_token("sam"))) as other_user:
        assert (await prompt_round_trip(other_user, "Anime"))["success"] is True
    await first.close()
    await wait_for(lambda: proxy.service is not None and len(proxy.service.relays) == 1)
    async with await connect(proxy.stream_url(token)) as again:
        assert (await prompt_round_trip(again, "Anime"))["success"] is True
    await second.close()


async def test_the_quota_ends_a_session_and_refuses_the_next(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    proxy = await proxy_factory()
    await proxy.ledger.set_quota("tess", 5)
    errors: list[Exception] = []
    session = await dw.RealtimeSession.connect(
        backend=proxy.backend_for("tess"), prompt="Anime", retry=NO_RETRY
    )
    session.on("error", errors.append)
    try:
        await wait_for(lambda: session.connection_state == "disconnected", what="quota end")
    finally:
        await session.disconnect()
    assert isinstance(errors[-1], dw.InsufficientCredits)
    [row] = await proxy.ledger.sessions("tess")
    assert row.end_reason == "quota_exhausted" and row.seconds == 5
    with pytest.raises(dw.InsufficientCredits):
        await dw.RealtimeSession.connect(backend=proxy.backend_for("tess"), prompt="Anime")
    assert len(await proxy.ledger.sessions("tess")) == 1  # refused before a session started


# ---- HTTP endpoints -----------------------------------------------------------------------------


async def test_health_metrics_and_plain_http(proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory()
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{proxy.http_url}/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok" and health.json()["ledger"] == "ok"
        metrics = await http.get(f"{proxy.http_url}/metrics")
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "decart_proxy_sessions_active 0" in metrics.text
        plain = await http.get(f"{proxy.http_url}/v1/stream?model=x")
        assert plain.status_code == 426
    with pytest.raises(websockets.InvalidStatus):
        await connect(f"{proxy.realtime_url}/nowhere")


# ---- the ledger failing and the service ending generation ---------------------------------------


class FailingLedger(SQLiteLedger):
    """A ledger whose tick writes start failing on demand (a database going down)."""

    failing = False

    async def record_tick(self, session_id: str, seconds: float, *, now: float) -> None:
        if self.failing:
            raise LedgerError("disk full")
        await super().record_tick(session_id, seconds, now=now)


async def test_a_failing_ledger_ends_the_session_rather_than_serve_unmetered(
    emulator: Emulator, proxy_factory: ProxyFactory
) -> None:
    ledger = FailingLedger(":memory:")
    proxy = await proxy_factory(ledger=ledger)
    ticks: list[int] = []
    errors: list[Exception] = []
    session = await dw.RealtimeSession.connect(
        backend=proxy.backend_for("uma"), prompt="Anime", retry=NO_RETRY
    )
    session.on("generation_tick", ticks.append)
    session.on("error", errors.append)
    try:
        await wait_for(lambda: len(ticks) >= 2, what="ticks")
        ledger.failing = True
        await wait_for(lambda: session.connection_state == "disconnected", what="the end")
    finally:
        await session.disconnect()
    assert "usage ledger unavailable" in str(errors[-1])
    [row] = await ledger.sessions("uma")
    assert row.seconds == ticks[-1]  # the unrecorded tick was never forwarded
    assert 'decart_proxy_session_ends_total{reason="ledger_error"} 1' in proxy.metrics()
    await ledger.close()


async def test_the_services_end_reason_is_recorded(proxy_factory: ProxyFactory) -> None:
    emu = Emulator(tick_seconds=0.05, credits_seconds=3).start()
    try:
        proxy = await proxy_factory(upstream=emu)
        ended: list[str] = []
        session = await dw.RealtimeSession.connect(
            backend=proxy.backend_for("vic"), prompt="Anime", retry=NO_RETRY
        )
        session.on("generation_ended", ended.append)
        try:
            await wait_for(lambda: session.connection_state == "disconnected", what="the end")
        finally:
            await session.disconnect()
        await wait_for(lambda: proxy.service is not None and not proxy.service.relays)
        [row] = await proxy.ledger.sessions("vic")
        assert row.end_reason == "generation_ended_insufficient_credits"
        assert row.seconds == 3
    finally:
        emu.stop()
