"""``camera={...}``: the getUserMedia constraints the widget takes, checked in Python."""

from __future__ import annotations

from typing import Any

import pytest

import decart_widget as dw
from decart_widget.widget._camera import check_camera


@pytest.mark.parametrize(
    "camera",
    [
        {"facingMode": "user"},
        {"facingMode": "environment", "width": 1280, "height": {"ideal": 720}},
        {"facingMode": {"exact": "environment"}, "frameRate": {"min": 15, "max": 30}},
        {"aspectRatio": 1.777, "resizeMode": "crop-and-scale"},
    ],
)
def test_valid_constraints_pass_unchanged(camera: dict[str, Any]) -> None:
    assert check_camera(camera) == camera


def test_none_is_no_constraint() -> None:
    assert check_camera(None) == {}


@pytest.mark.parametrize(
    ("camera", "message"),
    [
        ("user", "camera must be a dict"),
        ({"facingMode": "front"}, "facingMode must be 'user' or 'environment'"),
        ({"facingMode": {"prefer": "user"}}, "takes 'ideal' or 'exact'"),
        ({"width": -1}, "width must be a positive number"),
        ({"width": True}, "width must be a positive number"),
        ({"frameRate": {"min": "15"}}, "must be positive numbers"),
        ({"height": {"around": 3}}, "takes ideal, exact, min or max"),
        ({"deviceId": "abc"}, "device_id="),
        ({"facingmode": "user"}, "unknown camera constraint 'facingmode'"),
    ],
)
def test_bad_constraints_are_refused_with_what_is_wrong(camera: Any, message: str) -> None:
    with pytest.raises(dw.InvalidInput, match=message):
        check_camera(camera)


def test_the_widget_syncs_checked_constraints_and_refuses_bad_ones() -> None:
    backend = dw.Decart(api_key="dct_test_not_used")
    w = dw.RealtimeWidget(camera={"facingMode": "environment"}, backend=backend)
    assert w.camera == {"facingMode": "environment"}
    assert w.get_state()["camera"] == {"facingMode": "environment"}
    w.camera = {"facingMode": "user"}
    with pytest.raises(dw.InvalidInput, match="facingMode"):
        w.camera = {"facingMode": "sideways"}
    assert w.camera == {"facingMode": "user"}
    with pytest.raises(dw.InvalidInput, match="unknown camera constraint"):
        dw.RealtimeWidget(camera={"zoom": 2}, backend=backend)
    w.close()
