"""``RealtimeWidget(camera={...})``: camera constraints checked in Python, passed to getUserMedia.

Only the constraints that make sense for a realtime model's input are taken, each in the forms
the Media Capture spec allows (a bare value, or ``{"ideal"|"exact"|"min"|"max": value}``), so a
typo fails in the cell that made it instead of silently in the browser. ``deviceId`` is the
``device_id=`` argument, not a constraint here. See docs/widget.md, "Camera constraints".
"""

from __future__ import annotations

from typing import Any

from ..protocol._errors import InvalidInput

FACING_MODES = ("user", "environment", "left", "right")
RESIZE_MODES = ("none", "crop-and-scale")
NUMERIC = ("width", "height", "frameRate", "aspectRatio")
RANGE_KEYS = frozenset({"ideal", "exact", "min", "max"})
WORD_KEYS = frozenset({"ideal", "exact"})


def check_camera(camera: Any) -> dict[str, Any]:
    """The constraints to merge into the camera's getUserMedia video constraints."""
    if camera is None:
        return {}
    if not isinstance(camera, dict):
        raise InvalidInput(f"camera must be a dict of constraints; got {type(camera).__name__}")
    checked: dict[str, Any] = {}
    for key, value in camera.items():
        if key == "facingMode":
            checked[key] = _word(key, value, FACING_MODES)
        elif key == "resizeMode":
            checked[key] = _word(key, value, RESIZE_MODES)
        elif key in NUMERIC:
            checked[key] = _number(key, value)
        elif key == "deviceId":
            raise InvalidInput("choose the camera with device_id=, not camera={'deviceId': ...}")
        else:
            known = ", ".join(("facingMode", "resizeMode", *NUMERIC))
            raise InvalidInput(f"unknown camera constraint {key!r}; known: {known}")
    return checked


def _word(key: str, value: Any, allowed: tuple[str, ...]) -> Any:
    choices = " or ".join(repr(a) for a in allowed)
    if isinstance(value, dict):
        if not value or set(value) - WORD_KEYS:
            raise InvalidInput(f"camera {key} takes 'ideal' or 'exact'; got {sorted(value)}")
        for inner in value.values():
            if inner not in allowed:
                raise InvalidInput(f"camera {key} must be {choices}; got {inner!r}")
        return dict(value)
    if value not in allowed:
        raise InvalidInput(f"camera {key} must be {choices}; got {value!r}")
    return value


def _number(key: str, value: Any) -> Any:
    def positive(number: Any) -> bool:
        return isinstance(number, (int, float)) and not isinstance(number, bool) and number > 0

    if isinstance(value, dict):
        if not value or set(value) - RANGE_KEYS:
            raise InvalidInput(f"camera {key} takes ideal, exact, min or max; got {sorted(value)}")
        if not all(positive(v) for v in value.values()):
            raise InvalidInput(f"camera {key} values must be positive numbers; got {value!r}")
        return dict(value)
    if not positive(value):
        raise InvalidInput(f"camera {key} must be a positive number; got {value!r}")
    return value
