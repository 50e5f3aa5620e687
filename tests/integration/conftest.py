"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from decart_widget import _backends


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
