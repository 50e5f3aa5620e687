"""Decart's own Python SDK (``decart[realtime]`` 0.2.x, unmodified) completes a realtime session
against the emulator: Gen-B handshake with ``livekit_early_room_info``, its initial prompt after
the room info, LiveKit room, pixels transformed, ``set_prompt`` changing them, ticks.

The SDK is not a dependency of this project. The test runs decart_sdk_session.py in the
interpreter named by ``DECART_SDK_PYTHON`` (e.g. a throwaway venv:
``python -m venv /tmp/decart-venv && /tmp/decart-venv/bin/pip install 'decart[realtime]' numpy``),
or in this one when it has the SDK; otherwise it skips.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from decart_widget.emulator import Emulator

SCRIPT = Path(__file__).with_name("decart_sdk_session.py")


def _sdk_python() -> str:
    named = os.environ.get("DECART_SDK_PYTHON")
    if named:
        return named
    if importlib.util.find_spec("decart") is not None:
        return sys.executable
    pytest.skip("Decart's Python SDK is not installed (DECART_SDK_PYTHON: a venv that has it)")


async def test_decarts_python_sdk_completes_a_session() -> None:
    python = _sdk_python()
    with Emulator() as emu:
        process = await asyncio.create_subprocess_exec(
            python,
            str(SCRIPT),
            emu.api_url,
            emu.realtime_url,
            emu.api_key,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), 120)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        steps = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
        assert process.returncode == 0, (steps, err.decode()[-2000:])
        names = [step["step"] for step in steps]
        assert names == [
            "connected",
            "initial prompt applied",
            "set_prompt acked",
            "prompt changed the pixels",
            "generating",
            "disconnected",
        ]
        session = emu.sessions[0]
        assert session.transport == "livekit"
        assert steps[0]["session_id"] == session.id
        assert session.prompts_applied[:2] == ["invert", "noir"]
        assert session.user_agent is not None and "decart" in session.user_agent.lower()
        emu.wait_until(lambda: emu.sessions[0].end_reason is not None)
