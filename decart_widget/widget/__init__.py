"""The notebook widget: `RealtimeWidget` (anywidget), its signaling modes (`Direct`, `Kernel`,
`Proxy`), the kernel relay's hooks, frames for Python (`frames`), and the front-end bundle in
``static/``."""

from .frames import (
    FrameTimeout,
    FrameUnavailable,
    NotDisplayed,
    NotStarted,
    ViewHidden,
    WidgetClosed,
)
from .hooks import DROP, Reject, UsageRecord
from .modes import Direct, Kernel, Proxy, SignalingMode
from .widget import RealtimeWidget

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
    "SignalingMode",
    "UsageRecord",
    "ViewHidden",
    "WidgetClosed",
]
