"""`SessionView`: Python frames shown live in a notebook, with no camera and no session of its own.

``session.show()`` (a headless `decart_widget.RealtimeSession`) returns one showing the session's
transformed output; ``SessionView(frames)`` shows any frames (an iterable or async iterable of
H x W x 3 uint8 arrays, or a function returning one). The frames ride the widget comm with the
back-pressure of `decart_widget.widget._frame_feed` (at most two unacknowledged: a slow page
makes Python skip, not queue); the front end is ``static/session_view.js``
(js/src/session_view.ts). See docs/headless.md, "Watching a session in a notebook".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ._frame_feed import FrameFeed, check_source
from ._frames import check_fps

log = logging.getLogger("decart_widget.widget.session_view")

STATIC = Path(__file__).parent / "static"
#: Frames a second a view shows by default (the frames ride the comm as raw RGB).
DEFAULT_FPS = 15.0


def _module() -> Path | str:
    path = STATIC / "session_view.js"
    if path.exists():
        return path
    log.warning("the front-end bundle %s is missing: run `bash scripts/setup.sh`", path)
    return "export default { render({ el }) { el.textContent = 'session_view.js is missing'; } };"


class SessionView(anywidget.AnyWidget):
    """A live picture of frames from Python: ``SessionView(frames, fps=15)``, or
    ``session.show()`` for a `RealtimeSession`'s output. The last view displayed is live."""

    _esm = _module()
    #: why the frames stopped ("" while they come): the source ended or failed
    ended = traitlets.Unicode("").tag(sync=True)

    def __init__(self, frames: Any, fps: float = DEFAULT_FPS) -> None:
        opener = check_source(frames)
        rate = check_fps(fps)
        super().__init__()
        self._feed = FrameFeed(opener, self._send_frame, rate, failed=self._failed)
        self.on_msg(self._on_message)

    @property
    def frames_sent(self) -> int:
        """How many frames went to the page so far."""
        return self._feed.sent

    def close(self) -> None:
        feed = getattr(self, "_feed", None)
        if feed is not None:
            feed.close()
        super().close()

    def _send_frame(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        if self.comm is not None:
            self.send(content, buffers)

    def _failed(self, message: str) -> None:
        self.ended = message

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict):
            self._feed.message(content)
