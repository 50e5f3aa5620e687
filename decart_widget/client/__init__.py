"""The headless Python client: send frames, get transformed frames back as numpy arrays."""

from ._session import RealtimeSession
from ._sources import FrameSource, SyntheticTrack, make_track

__all__ = ["FrameSource", "RealtimeSession", "SyntheticTrack", "make_track"]
