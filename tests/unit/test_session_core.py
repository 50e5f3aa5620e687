"""The Python session core's own glue: what the shared conformance traces cannot say.

The behaviour of the core (handshakes, acks, timeouts, retries, errors, replay, seconds) is in
``conformance/traces`` and replayed by test_conformance.py on this core and on the TypeScript
twin. What stays here is Python-specific: constructor errors, values of the wrong type, the
action and state types themselves.
"""

from __future__ import annotations

from typing import Any

import pytest

from decart_widget.protocol import (
    ConnectionState,
    Fail,
    InvalidInput,
    RetryPolicy,
    SessionCore,
    StateChanged,
)

TOO_BIG = "A" * ((10 * 1024 * 1024 + 3) * 4 // 3)


def test_an_oversize_initial_image_raises_at_construction() -> None:
    with pytest.raises(InvalidInput, match="10 MiB"):
        SessionCore(image=TOO_BIG)


def test_a_malformed_initial_image_raises_at_construction() -> None:
    with pytest.raises(InvalidInput, match="base64"):
        SessionCore(image="data:image/png,raw")


@pytest.mark.parametrize("bad", [42, b"bytes", ["Anime"]])
def test_a_prompt_that_is_not_text_is_rejected_as_invalid_input(bad: Any) -> None:
    core = SessionCore(prompt="Anime")
    rid, actions = core.set_prompt(0, bad)
    assert len(actions) == 1 and isinstance(actions[0], Fail)
    assert actions[0].request_id == rid and isinstance(actions[0].error, InvalidInput)
    assert core.desired_prompt == "Anime"


def test_an_image_that_is_not_text_is_rejected_as_invalid_input() -> None:
    core = SessionCore()
    _, actions = core.set_image(0, b"\x89PNG")  # type: ignore[arg-type]
    assert len(actions) == 1 and isinstance(actions[0], Fail)
    assert isinstance(actions[0].error, InvalidInput) and "base64 text" in actions[0].error.message


def test_request_ids_are_unique_and_increasing() -> None:
    core = SessionCore()
    ids = [core.set_prompt(0, f"p{i}")[0] for i in range(3)] + [core.set_image(0, None)[0]]
    assert ids == sorted(set(ids))


def test_connection_states_print_as_their_wire_names() -> None:
    assert str(ConnectionState.GENERATING) == "generating"
    assert StateChanged(ConnectionState.CONNECTING) == StateChanged(ConnectionState("connecting"))


def test_the_default_retry_policy_has_five_retries() -> None:
    assert RetryPolicy().retries == 5
    assert RetryPolicy((0.5,)).retries == 1


def test_the_media_transport_is_webrtc_unless_livekit_is_asked_for() -> None:
    assert SessionCore().transport == "webrtc"
    core = SessionCore(transport="livekit")
    assert core.transport == "livekit"
    assert (core.queue_position, core.queue_size) == (None, None)
    with pytest.raises(InvalidInput, match="'webrtc' or 'livekit', got 'sfu'"):
        SessionCore(transport="sfu")
