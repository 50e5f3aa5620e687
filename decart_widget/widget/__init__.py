"""The notebook widget: `RealtimeWidget` (anywidget) and its front-end bundle in ``static/``."""

from .widget import RealtimeWidget

__all__ = ["RealtimeWidget"]
