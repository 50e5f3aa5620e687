"""The notebook widget: `RealtimeWidget` (anywidget), its signaling modes (`Direct`, `Kernel`,
`Proxy`), the kernel relay's hooks, and the front-end bundle in ``static/``."""

from .hooks import DROP, Reject, UsageRecord
from .modes import Direct, Kernel, Proxy, SignalingMode
from .widget import RealtimeWidget

__all__ = [
    "DROP",
    "Direct",
    "Kernel",
    "Proxy",
    "RealtimeWidget",
    "Reject",
    "SignalingMode",
    "UsageRecord",
]
