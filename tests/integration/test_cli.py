"""The `decart-widget` command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "decart_widget"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_lists_the_commands() -> None:
    result = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("emulator", "proxy", "lab"):
        assert command in result.stdout


def test_lab_refuses_a_missing_notebooks_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = subprocess.run(
        [*CLI, "lab", "--notebooks", str(missing)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "no notebooks folder" in result.stderr


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_lab_serves_the_quickstart_with_an_emulator_and_stops_both() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DECART_API_KEY", None)
    with subprocess.Popen(
        [*CLI, "lab", "--no-browser", f"--ServerApp.port={port}", "--IdentityProvider.token=t"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
        # A runner started in the background (`cmd &` without job control) ignores SIGINT, and
        # children inherit that: give the CLI a terminal's Ctrl+C back.
        preexec_fn=_default_sigint,
    ) as proc:
        try:
            assert proc.stdout is not None
            seen = []
            for line in proc.stdout:  # log lines may come first
                seen.append(line)
                match = re.match(r"emulator: (http://127\.0\.0\.1:\d+)", line)
                if match or len(seen) > 50:
                    break
            assert match, seen
            emulator_url = match.group(1)
            # keep reading: a full pipe would block the server's (and the CLI's) logging
            drain = threading.Thread(target=seen.extend, args=(proc.stdout,), daemon=True)
            drain.start()
            deadline = time.monotonic() + 90
            contents = None
            while time.monotonic() < deadline:
                try:
                    contents = httpx.get(
                        f"http://127.0.0.1:{port}/api/contents/00-quickstart.ipynb",
                        params={"content": 0},
                        headers={"Authorization": "token t"},
                        timeout=5,
                    )
                    break
                except httpx.TransportError:
                    time.sleep(0.5)
            assert contents is not None and contents.status_code == 200
            quota = httpx.get(
                f"{emulator_url}/v1/realtime/quota",
                headers={"X-API-KEY": "dct_local_emulator"},
                timeout=5,
            )
            assert quota.status_code == 200
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output = "".join(seen[-80:])
                raise AssertionError(f"lab did not stop on Ctrl+C:\n{output}") from None
    try:
        httpx.get(f"{emulator_url}/v1/realtime/quota", timeout=2)
        raise AssertionError("the emulator is still serving after lab stopped")
    except httpx.TransportError:
        pass


def test_emulator_serves_both_generations_on_one_port_and_queues() -> None:
    import asyncio
    import json

    import websockets

    port = free_port()
    process = subprocess.Popen(
        [*CLI, "emulator", "--port", str(port), "--room-capacity", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:  # ends with the process, so a crash fails here, not hangs
            lines.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        text = "".join(lines)
        assert f"Realtime URL: ws://127.0.0.1:{port}\n" in text
        assert (
            f"Gen-A (WebRTC offer/answer) and Gen-B (LiveKit rooms at ws://127.0.0.1:{port}/rtc)"
            in text
        )
        assert "Queue:        Gen-B sessions beyond 0 in rooms wait in line" in text

        async def join() -> dict[str, object]:
            url = f"ws://127.0.0.1:{port}/v1/stream?api_key=dct_local_emulator&model=lucy-2.1"
            async with websockets.connect(url, proxy=None, open_timeout=10) as ws:
                await ws.send(json.dumps({"type": "livekit_join"}))
                reply: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 10))
                return reply

        assert asyncio.run(join()) == {
            "type": "queue_position",
            "position": 1,
            "queue_size": 1,
            "queue_position": 1,
        }
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
