"""One source of protocol constants: constants.json, read by Python, bundled by the front end."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from decart_widget.protocol import _constants as constants
from decart_widget.protocol import messages
from decart_widget.protocol._errors import ERROR_KINDS, classify, is_permanent

ROOT = Path(__file__).resolve().parents[2]


def test_every_error_class_has_a_kind_in_the_data_file_and_back() -> None:
    assert set(ERROR_KINDS) == set(constants.ERROR_KIND_NAMES)


def test_the_messages_module_uses_the_data_files_end_reasons() -> None:
    assert messages.END_REASONS is constants.END_REASONS
    assert "insufficient_credits" in constants.END_REASONS


def test_the_markers_drive_the_classification() -> None:
    for marker in constants.CREDIT_MARKERS:
        assert classify(f"Error: {marker.upper()}").kind == "credits"
        assert is_permanent(marker)
    for marker in constants.ORIGIN_MARKERS:
        assert classify(f"bad {marker}").kind == "authentication"


@pytest.mark.parametrize("size", [*range(12), 1000, 1001, 1002])
def test_decoded_size_and_base64_length_match_real_base64(size: int) -> None:
    text = base64.b64encode(bytes(size)).decode("ascii")
    assert constants.decoded_size(text) == size
    assert constants.decoded_size(text.encode("ascii")) == size
    assert constants.base64_length(size) == len(text)


def test_the_limits_are_decarts() -> None:
    assert constants.MAX_IMAGE_BYTES == 10 * 2**20
    assert constants.base64_length(constants.MAX_IMAGE_BYTES) < constants.MAX_FRAME_BYTES
    assert constants.BACKOFF == (1.0, 2.0, 4.0, 8.0, 10.0)
    assert (constants.CLOSE_TRY_AGAIN_LATER, constants.CLOSE_PROXY_CONCURRENCY) == (1013, 4013)


def test_no_module_spells_the_limits_or_the_base64_arithmetic_again() -> None:
    repeated = re.compile(r"1[06] \* 1024 \* 1024|\* 3 // 4|\* 3\) / 4|= 1013\b|= 4013\b")
    sources = [*ROOT.glob("decart_widget/**/*.py"), *ROOT.glob("js/src/**/*.ts")]
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group()}"
        for path in sources
        if path.name not in ("_constants.py", "constants.ts")
        for match in repeated.finditer(path.read_text("utf-8"))
    ]
    assert offenders == []
