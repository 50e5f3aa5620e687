"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from proxy_kit import ProxyFactory, run_emulator, run_proxies

from decart_widget import _backends
from decart_widget.emulator import Emulator


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No key in the environment; the automatic emulator a test starts is stopped after it."""
    monkeypatch.delenv("DECART_API_KEY", raising=False)
    before = _backends._shared_emulator
    yield
    started = _backends._shared_emulator
    if started is not None and started is not before:
        started.stop()
        _backends._shared_emulator = before


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """The proxy tests' upstream (`proxy_kit.run_emulator`); a module may define its own."""
    yield from run_emulator()


@pytest_asyncio.fixture
async def proxy_factory(emulator: Emulator) -> AsyncIterator[ProxyFactory]:
    """Starts proxies in front of ``emulator``, all stopped after the test."""
    async for make in run_proxies(emulator):
        yield make
