"""A stand-in for a widget's page in kernel-side tests: it records what the widget sends and
answers as the front end would, from another thread (as the comm's messages arrive)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import decart_widget as dw


class Page:
    """Records what ``widget`` sends (``sent``, in order) and replies to it."""

    def __init__(self, widget: dw.RealtimeWidget, monkeypatch: pytest.MonkeyPatch) -> None:
        self.widget = widget
        self.sent: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        monkeypatch.setattr(widget, "send", self._send)
        widget._repr_mimebundle_()  # displayed, as a cell's output does

    def _send(self, content: dict[str, Any], buffers: Any = None) -> None:
        with self.changed:
            self.sent.append(content)
            self.changed.notify_all()

    def reply(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        thread = threading.Thread(
            target=self.widget._on_frontend_message, args=(self.widget, content, buffers or [])
        )
        thread.start()
        thread.join()

    def wait_any(self, timeout: float = 5) -> bool:
        """Whether the widget sent anything within ``timeout`` seconds."""
        with self.changed:
            return self.changed.wait_for(lambda: bool(self.sent), timeout)

    def wait_sent(self, kind: str, count: int = 1) -> dict[str, Any]:
        """The ``count``-th message of type ``kind``, once sent (fails after 5 s)."""
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.of(kind)) >= count, 5), (
                f"no {kind}: {self.sent}"
            )
            return self.of(kind)[count - 1]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == kind]
