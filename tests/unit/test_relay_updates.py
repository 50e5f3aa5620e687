"""`KernelUpdates`: the kernel relay's updates through the protocol's update queue, without
sockets or threads. (The queue's own rules are the conformance traces'; these cases are the
relay's: whole desired states, the browser's handshake, hooks, reverting the widget.)"""

from __future__ import annotations

import base64
from typing import Any

from decart_widget.widget._updates import (
    EMPTY,
    KernelUpdates,
    Revert,
    SendUpdate,
    Settled,
    WidgetState,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 16
OTHER = b"\x89PNG\r\n\x1a\n" + b"y" * 16


def prompt_ack(text: str, success: bool = True, error: str | None = None) -> dict[str, Any]:
    return {"type": "prompt_ack", "prompt": text, "success": success, "error": error}


def image_ack(success: bool = True, error: str | None = None) -> dict[str, Any]:
    return {"type": "set_image_ack", "success": success, "error": error}


def sends(actions: list[Any]) -> list[dict[str, Any]]:
    return [a.frame for a in actions if isinstance(a, SendUpdate)]


ANIME = WidgetState("Anime")


def handshake(desired: WidgetState) -> dict[str, Any]:
    """The frame the browser's core sends first for ``desired``."""
    if desired.image is not None or desired.prompt is None:
        image = None if desired.image is None else base64.b64encode(desired.image).decode()
        return {
            "type": "set_image",
            "image_data": image,
            "prompt": desired.prompt,
            "enhance_prompt": desired.enhance,
        }
    return {"type": "prompt", "prompt": desired.prompt, "enhance_prompt": desired.enhance}


def running(desired: WidgetState = ANIME) -> KernelUpdates:
    """Open, with the browser's handshake for ``desired`` acked."""
    updates = KernelUpdates(desired=desired)
    updates.opened()
    frame = handshake(desired)
    updates.browser_frame(frame)
    ack = prompt_ack(desired.prompt or "") if frame["type"] == "prompt" else image_ack()
    assert sends(updates.ack(0.0, ack)) == []
    assert updates.phase == "running" and updates.applied == desired
    return updates


def test_nothing_is_sent_before_the_handshake_is_acked() -> None:
    updates = KernelUpdates(desired=WidgetState("Anime"))
    assert updates.set_desired(0, WidgetState("Noir")) == []  # closed
    updates.opened()
    assert updates.set_desired(0, WidgetState("Sketch")) == []  # handshake not sent yet
    updates.browser_frame({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
    assert updates.set_desired(0, WidgetState("Invert")) == []  # handshake in flight
    # the handshake applied a stale state: the kernel brings the service up to date
    (frame,) = sends(updates.ack(0.1, prompt_ack("Anime")))
    assert frame == {"type": "prompt", "prompt": "Invert", "enhance_prompt": True}


def test_one_in_flight_the_latest_queued_a_burst_sends_two() -> None:
    updates = running()
    sent: list[dict[str, Any]] = []
    for index in range(50):
        sent += sends(updates.set_desired(index * 0.01, WidgetState(f"p{index}")))
    assert [f["prompt"] for f in sent] == ["p0"]
    assert sends(updates.ack(1, prompt_ack("p0"))) == [
        {"type": "prompt", "prompt": "p49", "enhance_prompt": True}
    ]
    assert sends(updates.ack(1.1, prompt_ack("p49"))) == []
    assert updates.applied == WidgetState("p49") and updates.pending == []


def test_setting_back_to_the_applied_state_while_in_flight_sends_it_again() -> None:
    updates = running()
    sends(updates.set_desired(0, WidgetState("Noir")))
    assert updates.set_desired(0, WidgetState("Anime")) == []
    # Noir was applied meanwhile, so Anime must be sent once more
    assert sends(updates.ack(0.1, prompt_ack("Noir")))[0]["prompt"] == "Anime"


def test_a_failed_kernel_update_reverts_unless_something_newer_waits() -> None:
    updates = running()
    sends(updates.set_desired(0, WidgetState("bad")))
    actions = updates.ack(0.1, prompt_ack("bad", False, "Prompt rejected by moderation"))
    assert any(isinstance(a, Settled) and not a.success for a in actions)
    assert Revert(WidgetState("Anime")) in actions
    assert updates.desired == WidgetState("Anime") and sends(actions) == []

    sends(updates.set_desired(1, WidgetState("bad")))
    updates.set_desired(1, WidgetState("good"))
    actions = updates.ack(1.1, prompt_ack("bad", False, "nope"))
    assert not any(isinstance(a, Revert) for a in actions)
    assert sends(actions)[0]["prompt"] == "good"


def test_acks_match_prompts_by_text_and_images_in_order() -> None:
    updates = running()
    updates.set_desired(0, WidgetState("Anime", PNG))
    (entry,) = updates.pending
    assert entry.kind == "image" and entry.frame["image_data"] == base64.b64encode(PNG).decode()
    # a foreign prompt ack (not ours) does not settle the image
    assert updates.ack(0.1, prompt_ack("something else")) == []
    assert updates.in_flight is entry
    actions = updates.ack(0.2, image_ack())
    assert isinstance(actions[0], Settled) and actions[0].pending is entry
    assert updates.applied == WidgetState("Anime", PNG)


def first_frame(base: WidgetState, target: WidgetState) -> dict[str, Any] | None:
    """The frame the kernel sends to move the service from ``base`` to ``target``."""
    frames = sends(running(base).set_desired(0, target))
    assert len(frames) <= 1
    return frames[0] if frames else None


def test_frames_for_each_kind_of_change() -> None:
    base = WidgetState("Anime", PNG)
    assert first_frame(base, base) is None
    assert first_frame(base, WidgetState("Noir", PNG)) == {
        "type": "prompt",
        "prompt": "Noir",
        "enhance_prompt": True,
    }
    image = first_frame(base, WidgetState("Anime", OTHER, False))
    assert image is not None and image["type"] == "set_image" and image["prompt"] == "Anime"
    assert image["enhance_prompt"] is False
    assert first_frame(base, WidgetState(None, PNG)) == {
        "type": "set_image",
        "image_data": base64.b64encode(PNG).decode(),
        "prompt": None,
        "enhance_prompt": True,
    }
    assert first_frame(base, WidgetState("Anime", None))["image_data"] is None  # type: ignore[index]
    # enhance alone: the prompt again with the new flag; without a prompt, nothing to say
    assert first_frame(base, WidgetState("Anime", PNG, False)) == {
        "type": "prompt",
        "prompt": "Anime",
        "enhance_prompt": False,
    }
    assert first_frame(EMPTY, WidgetState(None, None, False)) is None


def test_blank_prompts_are_no_prompt() -> None:
    updates = running(WidgetState("Anime"))
    (frame,) = sends(updates.set_desired(0, WidgetState("   ")))
    assert frame == {
        "type": "set_image",
        "image_data": None,
        "prompt": None,
        "enhance_prompt": True,
    }


def test_an_ack_timeout_reports_and_moves_on_and_a_late_ack_still_matches() -> None:
    updates = running()
    sends(updates.set_desired(0, WidgetState("slow")))
    deadline = updates.next_deadline()
    assert deadline == 15.0
    assert updates.on_timer(10) == []
    actions = updates.on_timer(15)
    (settled,) = [a for a in actions if isinstance(a, Settled)]
    assert settled.timed_out and not settled.success and "15 s" in (settled.error or "")
    assert Revert(WidgetState("Anime")) in actions and updates.in_flight is None
    # the late ack: the service did apply it
    updates.ack(20, prompt_ack("slow"))
    assert updates.applied.prompt == "slow"


def test_a_hook_rejection_settles_like_a_failed_ack() -> None:
    updates = running()
    (send,) = [a for a in updates.set_desired(0, WidgetState("bad")) if isinstance(a, SendUpdate)]
    actions = updates.reject(0.1, send.pending, "not here")
    (settled,) = [a for a in actions if isinstance(a, Settled)]
    assert settled.by_hook and settled.error == "not here"
    assert updates.desired == WidgetState("Anime") and updates.pending == []


def test_a_failed_handshake_leaves_nothing_applied_and_the_kernel_sends_the_desired_state() -> None:
    updates = KernelUpdates(desired=WidgetState("Anime"))
    updates.opened()
    updates.browser_frame({"type": "prompt", "prompt": "Anime", "enhance_prompt": True})
    actions = updates.ack(0, prompt_ack("Anime", False, "Prompt rejected"))
    assert updates.phase == "running"
    assert sends(actions) == [{"type": "prompt", "prompt": "Anime", "enhance_prompt": True}]


def test_a_withdrawn_update_frees_the_slot_and_a_new_connection_starts_fresh() -> None:
    updates = running()
    (send,) = [a for a in updates.set_desired(0, WidgetState("x")) if isinstance(a, SendUpdate)]
    updates.withdraw(send.pending)
    assert updates.in_flight is None and updates.pending == []
    updates.opened()
    assert updates.phase == "handshake" and updates.applied == EMPTY
    updates.closed()
    assert updates.phase == "closed"


def test_an_ack_for_a_prompt_a_hook_rewrote_matches_the_rewritten_text() -> None:
    updates = running()
    (send,) = [a for a in updates.set_desired(0, WidgetState("cat")) if isinstance(a, SendUpdate)]
    send.pending.prompt = "a cat, watercolour"  # what a hook sent upstream instead
    assert updates.ack(0.1, prompt_ack("cat")) == []  # not the text the service got
    (settled,) = updates.ack(0.2, prompt_ack("a cat, watercolour"))
    assert isinstance(settled, Settled) and settled.success and settled.pending is send.pending
    assert settled.pending.frame["prompt"] == "cat"  # the browser hears of the widget's text
    assert updates.applied.prompt == "cat" and updates.desired.prompt == "cat"


def test_the_browsers_handshake_image_and_a_kernel_image_are_acked_in_order() -> None:
    updates = KernelUpdates(desired=WidgetState("Anime", PNG))
    updates.opened()
    updates.browser_frame(handshake(WidgetState("Anime", PNG)))
    assert updates.set_desired(0, WidgetState("Anime", OTHER)) == []  # waits for the handshake
    actions = updates.ack(0.1, image_ack())
    assert isinstance(actions[0], Settled) and actions[0].pending.origin == "browser"
    (frame,) = sends(actions)
    assert frame["image_data"] == base64.b64encode(OTHER).decode()
    (settled,) = updates.ack(0.2, image_ack())
    assert isinstance(settled, Settled) and settled.pending.origin == "kernel"
    assert updates.applied == WidgetState("Anime", OTHER)
