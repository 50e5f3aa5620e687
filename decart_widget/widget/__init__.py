"""The notebook widget: `RealtimeWidget` (anywidget), its kernel signaling relay and hooks, and the
front-end bundle in ``static/``."""

from .hooks import DROP, Reject, UsageRecord
from .widget import RealtimeWidget

__all__ = ["DROP", "RealtimeWidget", "Reject", "UsageRecord"]
