"""What the widget's and the headless client's recordings share: their errors and their checks.

See docs/widget.md ("Recording") and docs/headless.md ("Recording"). The widget records in the
page (``MediaRecorder``) and streams the file to the kernel in chunks
(`decart_widget.widget._recording`); the headless client encodes the frames it receives with PyAV
(`decart_widget.client._recording`). Both write a file whose frames run at a constant rate, show
a reconnect's gap as black frames, and stop at a size limit.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from .protocol._errors import DecartError, InvalidInput

RecordWhich = Literal["output", "input", "both"]
RECORD_WHICH = ("output", "input", "both")
#: File types a recording may have, by suffix.
CONTAINERS = {".webm": "webm", ".mp4": "mp4", ".mkv": "matroska"}
#: Default size limit of one recording, in bytes (``max_bytes=None`` lifts it).
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
#: Longest ``seconds`` a timed recording takes (an open-ended one has no limit but its size).
MAX_SECONDS = 24 * 3600.0
#: Highest recording frame rate.
MAX_RECORD_FPS = 60.0


class RecordingError(DecartError):
    """A recording could not start, or stopped early; ``path`` is the file (if one was written),
    complete and playable up to where the recording stopped."""

    kind = "recording"

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class AlreadyRecording(RecordingError):
    """A recording is running already (one at a time: stop it first)."""

    kind = "already_recording"


class NotRecording(RecordingError):
    """``stop_recording()`` with no recording running."""

    kind = "not_recording"


class RecordingTooLarge(RecordingError):
    """The recording reached its size limit (``max_bytes``) and was stopped there."""

    kind = "recording_too_large"


def check_record_path(path: Any) -> Path:
    """The file a recording writes: ``.webm``, ``.mp4`` or ``.mkv``, relative to the working
    directory (the kernel's, for the widget), in an existing folder."""
    if not isinstance(path, (str, Path)) or not str(path):
        raise InvalidInput(f"path must be a file name such as 'out.webm'; got {path!r}")
    target = Path(path).expanduser()
    if target.suffix.lower() not in CONTAINERS:
        known = ", ".join(CONTAINERS)
        raise InvalidInput(f"a recording's file must end in one of {known}; got {str(path)!r}")
    target = target.absolute()
    if target.is_dir():
        raise InvalidInput(f"{target} is a folder; give a file name")
    if not target.parent.is_dir():
        raise InvalidInput(f"the folder {target.parent} does not exist")
    return target


def check_record_which(which: Any) -> RecordWhich:
    if which not in RECORD_WHICH:
        raise InvalidInput(f'which must be "output", "input" or "both"; got {which!r}')
    return which  # type: ignore[no-any-return]


def check_seconds(seconds: Any) -> float:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or not 0 < seconds <= MAX_SECONDS
    ):
        raise InvalidInput(f"seconds must be a number in (0, {MAX_SECONDS:g}]; got {seconds!r}")
    return float(seconds)


def check_record_fps(fps: Any) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= MAX_RECORD_FPS:
        raise InvalidInput(f"fps must be a number in (0, {MAX_RECORD_FPS:g}]; got {fps!r}")
    return float(fps)


def check_max_bytes(max_bytes: Any) -> int | None:
    if max_bytes is None:
        return None
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
        raise InvalidInput(f"max_bytes must be a whole number >= 1024, or None; got {max_bytes!r}")
    return max_bytes


def size_words(size: int) -> str:
    """``12.3 MB``: a byte count for messages."""
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size:,} bytes"
