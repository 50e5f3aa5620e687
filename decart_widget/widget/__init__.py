"""The notebook widget: `RealtimeWidget` (anywidget), its signaling modes (`Direct`, `Kernel`,
`Proxy`), the kernel relay's hooks, frames for Python (`snapshot`, `on_frame`), Python frames
shown live (`SessionView`), and the front-end bundle in ``static/``."""

from ._frames import (
    FrameTimeout,
    FrameUnavailable,
    NotDisplayed,
    NotStarted,
    ViewHidden,
    WidgetClosed,
)
from ._hooks import DROP, Reject, UsageRecord
from ._modes import Direct, Kernel, Proxy, SignalingMode
from ._session_view import SessionView
from ._widget import RealtimeWidget

__all__ = [
    "DROP",
    "Direct",
    "FrameTimeout",
    "FrameUnavailable",
    "Kernel",
    "NotDisplayed",
    "NotStarted",
    "Proxy",
    "RealtimeWidget",
    "Reject",
    "SessionView",
    "SignalingMode",
    "UsageRecord",
    "ViewHidden",
    "WidgetClosed",
]
