"""The sans-I/O session core, driven with a fake clock (plain floats): no sockets, no sleeping."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from decart_widget.protocol import (
    AckTimeout,
    Action,
    AddRemoteCandidate,
    ApplyAnswer,
    AuthenticationError,
    ClosePeer,
    CloseSocket,
    ConcurrencyLimit,
    ConnectionLost,
    ConnectionState,
    DecartError,
    Emit,
    InsufficientCredits,
    InvalidInput,
    ModerationError,
    OpenSocket,
    Reject,
    Resolve,
    RestartIce,
    RetryPolicy,
    Send,
    SessionCore,
    SessionEnded,
    StartPeer,
    StateChanged,
)
from decart_widget.protocol.messages import (
    Answer,
    ClientMessage,
    Error,
    GenerationEnded,
    GenerationStarted,
    GenerationTick,
    IceCandidate,
    IceRestart,
    Offer,
    Prompt,
    PromptAck,
    QueuePosition,
    SessionId,
    SetImage,
    SetImageAck,
    Unknown,
)

S = ConnectionState
A = TypeVar("A")
IMG = "aGVsbG8="  # "hello"
IMG2 = "d29ybGQ="  # "world"
CAND: dict[str, Any] = {"candidate": "candidate:1 1 UDP 1 1.2.3.4 5 typ host", "sdpMid": "0"}


def sent(actions: list[Action]) -> list[ClientMessage]:
    return [a.message for a in actions if isinstance(a, Send)]


def of(actions: list[Action], cls: type[A]) -> list[A]:
    return [a for a in actions if isinstance(a, cls)]


def errors(actions: list[Action]) -> list[DecartError]:
    return [a.value for a in actions if isinstance(a, Emit) and isinstance(a.value, DecartError)]


def generating(core: SessionCore | None = None, now: float = 0.0) -> SessionCore:
    """Drive a core through the whole handshake to `generating`."""
    core = core or SessionCore(prompt="Anime")
    core.start(now)
    (initial,) = sent(core.socket_opened(now))
    ack = PromptAck(initial.prompt, True) if isinstance(initial, Prompt) else SetImageAck(True)
    assert StartPeer() in core.message(now, ack)
    core.local_offer(now, "offer-sdp")
    core.message(now, Answer("answer-sdp"))
    core.peer_state(now, "connected")
    core.message(now, GenerationStarted())
    assert core.state is S.GENERATING
    return core


def lose_and_reopen(core: SessionCore, now: float, delay: float = 1.0) -> list[Action]:
    """The socket drops at ``now``; the retry fires after ``delay``; returns the handshake."""
    core.socket_closed(now, 1006, "")
    assert core.state is S.RECONNECTING
    assert core.next_deadline() == now + delay
    assert of(core.on_timer(now + delay), OpenSocket)
    return core.socket_opened(now + delay)


# ---- handshake ---------------------------------------------------------------------------------


def test_a_new_core_is_disconnected_with_no_deadline() -> None:
    core = SessionCore(prompt="Anime")
    assert core.state is S.DISCONNECTED
    assert core.next_deadline() is None
    assert core.on_timer(1e9) == []
    assert core.desired_prompt == "Anime"
    assert core.accepted_prompt is None


def test_handshake_with_a_prompt_then_peer_then_generation() -> None:
    core = SessionCore(prompt="Anime", enhance=False)
    assert core.start(10.0) == [StateChanged(S.CONNECTING), OpenSocket(0)]
    assert core.start(10.0) == []  # idempotent
    assert core.socket_opened(10.5) == [Send(Prompt("Anime", False))]
    assert core.next_deadline() == pytest.approx(40.5)  # the initial-state ack: 30 s
    assert core.local_offer(10.6, "early") == []  # no peer before the ack
    assert core.message(11.0, PromptAck("Anime", True)) == [StartPeer()]
    assert core.accepted_prompt == "Anime"
    assert core.state is S.CONNECTING
    assert core.local_offer(11.1, "v=0") == [Send(Offer("v=0"))]
    assert core.local_candidate(11.2, CAND) == [Send(IceCandidate(CAND))]
    assert core.local_candidate(11.3, None) == [Send(IceCandidate(None))]
    assert core.message(11.4, Answer("answer")) == [ApplyAnswer("answer")]
    assert core.message(11.5, IceCandidate(CAND)) == [AddRemoteCandidate(CAND)]
    assert core.message(11.5, IceCandidate(None)) == [AddRemoteCandidate(None)]
    assert core.message(11.6, SessionId("sess-1")) == [Emit("session_id", "sess-1")]
    assert core.session_id == "sess-1"
    assert core.peer_state(12.0, "connected") == [StateChanged(S.CONNECTED)]
    assert core.next_deadline() is None  # the connect timeout no longer applies
    assert core.message(12.5, GenerationStarted()) == [StateChanged(S.GENERATING)]
    assert core.message(13.5, GenerationTick(1)) == [Emit("generation_tick", 1)]
    assert core.generation_seconds == 1


def test_handshake_with_an_image_sends_set_image_with_the_prompt() -> None:
    core = SessionCore(prompt="Noir", image=IMG)
    core.start(0)
    assert core.socket_opened(0) == [Send(SetImage(IMG, "Noir", True))]
    assert core.message(1, SetImageAck(True)) == [StartPeer()]
    assert (core.accepted_prompt, core.accepted_image) == ("Noir", IMG)


def test_handshake_without_prompt_or_image_sends_the_explicit_passthrough() -> None:
    core = SessionCore()
    core.start(0)
    assert core.socket_opened(0) == [Send(SetImage(None, None, True))]
    assert core.message(1, SetImageAck(True)) == [StartPeer()]


def test_a_data_url_image_is_sent_as_raw_base64() -> None:
    core = SessionCore(image="data:image/png;base64," + IMG)
    core.start(0)
    assert sent(core.socket_opened(0)) == [SetImage(IMG, None, True)]


def test_messages_in_an_older_order_are_accepted() -> None:
    core = SessionCore(prompt="Anime")
    core.start(0)
    core.socket_opened(0)
    # An answer before any offer is meaningless and ignored; session_id and a foreign ack are fine.
    assert core.message(0.1, Answer("too early")) == []
    assert core.message(0.2, SessionId("s")) == [Emit("session_id", "s")]
    assert core.message(0.3, PromptAck("something else", True)) == []
    assert core.state is S.CONNECTING
    assert core.message(0.4, PromptAck("Anime", True)) == [StartPeer()]
    # Remote candidates before the answer are held, then applied right after it.
    assert core.message(0.5, IceCandidate(CAND)) == []
    assert core.message(0.6, IceCandidate(None)) == []
    assert core.message(0.7, Answer("sdp")) == [
        ApplyAnswer("sdp"),
        AddRemoteCandidate(CAND),
        AddRemoteCandidate(None),
    ]
    assert core.message(0.8, Answer("again")) == []  # a duplicate answer is ignored
    # generation_started before the peer reports connected: generating, and it sticks.
    assert core.message(0.9, GenerationStarted()) == [StateChanged(S.GENERATING)]
    assert core.peer_state(1.0, "connected") == []
    assert core.state is S.GENERATING


def test_the_first_tick_means_generating_and_floats_are_whole_seconds() -> None:
    core = generating(None)
    core.socket_closed(0, 1006, "")
    core.on_timer(1)
    core.socket_opened(1)
    core.message(1, PromptAck("Anime", True))
    core.peer_state(1, "connected")
    assert core.state is S.CONNECTED
    assert core.message(2, GenerationTick(3.7)) == [
        StateChanged(S.GENERATING),
        Emit("generation_tick", 3),
    ]
    assert core.generation_seconds == 3
    assert core.message(3, GenerationTick(4)) == [Emit("generation_tick", 4)]


def test_unknown_and_gen_b_messages_are_ignored() -> None:
    core = generating()
    assert core.message(1, Unknown("brand_new", {"type": "brand_new"})) == []
    assert core.message(1, QueuePosition(2, 5)) == []
    assert core.state is S.GENERATING


# ---- requests and acks -------------------------------------------------------------------------


def test_prompt_ack_is_matched_by_exact_text() -> None:
    core = generating()
    rid, actions = core.set_prompt(100, "Cyberpunk")
    assert sent(actions) == [Prompt("Cyberpunk", True)]
    assert core.desired_prompt == "Cyberpunk"
    assert core.accepted_prompt == "Anime"
    # An ack for another text does not settle the request, but the server did apply that text.
    assert core.message(101, PromptAck("cyberpunk", True)) == []
    assert core.accepted_prompt == "cyberpunk"
    assert core.message(102, PromptAck("Cyberpunk", True)) == [Resolve(rid)]
    assert core.accepted_prompt == core.desired_prompt == "Cyberpunk"
    assert core.next_deadline() is None


def test_a_failed_ack_for_an_unknown_text_changes_nothing() -> None:
    core = generating()
    rid, _ = core.set_prompt(0, "B")
    assert core.message(1, PromptAck("Z", False, "moderation")) == []
    assert core.accepted_prompt == "Anime"
    assert core.message(2, PromptAck("B", True)) == [Resolve(rid)]


def test_prompt_ack_timeout_is_15_seconds() -> None:
    core = generating()
    rid, _ = core.set_prompt(100, "Cyberpunk")
    assert core.next_deadline() == pytest.approx(115)
    assert core.on_timer(114.9) == []
    (reject,) = core.on_timer(115)
    assert isinstance(reject, Reject) and reject.request_id == rid
    assert isinstance(reject.error, AckTimeout)
    assert "15 s" in reject.error.message
    assert core.desired_prompt == core.accepted_prompt == "Anime"
    assert core.state is S.GENERATING  # an ack timeout is not a connection failure


def test_image_ack_timeout_is_30_seconds() -> None:
    core = generating()
    rid, actions = core.set_image(50, IMG)
    assert sent(actions) == [SetImage(IMG, "Anime", True)]  # prompt kept
    assert core.next_deadline() == pytest.approx(80)
    assert core.on_timer(79.9) == []
    (reject,) = core.on_timer(80)
    assert isinstance(reject, Reject) and isinstance(reject.error, AckTimeout)
    assert reject.request_id == rid
    assert core.desired_image is None


def test_timeouts_are_configurable() -> None:
    core = generating(SessionCore(prompt="Anime", prompt_ack_timeout=2, image_ack_timeout=3))
    core.set_prompt(0, "x")
    assert core.next_deadline() == 2


def test_image_acks_match_the_oldest_pending_set_image_even_after_a_timeout() -> None:
    core = generating()
    first, _ = core.set_image(0, IMG)
    second, actions = core.set_image(1, IMG2)
    assert sent(actions) == []  # one update in flight at a time
    timeout = core.on_timer(30)
    assert of(timeout, Reject)[0].request_id == first
    assert sent(timeout) == [SetImage(IMG2, "Anime", True)]
    # The late ack of the first set_image arrives: FIFO matches it, not the second one.
    assert core.message(31, SetImageAck(True)) == []
    assert core.accepted_image == IMG
    assert core.desired_image == IMG2
    assert core.message(32, SetImageAck(True)) == [Resolve(second)]
    assert core.accepted_image == IMG2


def test_a_stray_image_ack_is_ignored() -> None:
    core = generating()
    assert core.message(1, SetImageAck(True)) == []
    assert core.accepted_image is None


def test_moderation_rejects_and_reverts_the_desired_prompt() -> None:
    core = generating()
    rid, _ = core.set_prompt(5, "forbidden")
    assert core.desired_prompt == "forbidden"
    (reject,) = core.message(6, PromptAck("forbidden", False, "Prompt rejected by moderation"))
    assert isinstance(reject, Reject) and reject.request_id == rid
    assert isinstance(reject.error, ModerationError)
    assert reject.error.message == "Prompt rejected by moderation"
    assert core.desired_prompt == core.accepted_prompt == "Anime"
    assert core.state is S.GENERATING


def test_a_rejected_image_reverts_the_desired_image() -> None:
    core = generating(SessionCore(prompt="Anime", image=IMG))
    core.set_image(5, IMG2, "Noir")
    assert (core.desired_prompt, core.desired_image) == ("Noir", IMG2)
    (reject,) = core.message(6, SetImageAck(False, "Image rejected by moderation"))
    assert isinstance(reject, Reject) and isinstance(reject.error, ModerationError)
    assert (core.desired_prompt, core.desired_image) == ("Anime", IMG)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (None, ModerationError),
        ("bad image", ModerationError),
        ("insufficient_credits", InsufficientCredits),
    ],
)
def test_a_failed_ack_carries_the_typed_error_of_its_text(
    text: str | None, kind: type[DecartError]
) -> None:
    core = generating()
    core.set_image(0, IMG)
    (reject,) = core.message(1, SetImageAck(False, text))
    assert isinstance(reject, Reject)
    assert type(reject.error) is kind


def test_a_burst_of_50_prompts_sends_two_and_applies_the_last() -> None:
    core = generating()
    actions: list[Action] = []
    ids = []
    for i in range(50):
        rid, acts = core.set_prompt(1 + i * 0.01, f"p{i}")
        ids.append(rid)
        actions += acts
    assert sent(actions) == [Prompt("p0", True)]
    assert of(actions, Resolve) == [Resolve(rid, superseded=True) for rid in ids[1:49]]
    assert core.desired_prompt == "p49"
    after_first = core.message(2, PromptAck("p0", True))
    assert after_first == [Resolve(ids[0]), Send(Prompt("p49", True))]
    assert core.message(3, PromptAck("p49", True)) == [Resolve(ids[49])]
    assert core.accepted_prompt == core.desired_prompt == "p49"
    assert len(sent(actions + after_first)) == 2


def test_an_image_queued_behind_a_prompt_is_not_lost_to_a_newer_prompt() -> None:
    core = generating()
    p1, _ = core.set_prompt(0, "p1")
    img, _ = core.set_image(0, IMG)
    p2, actions = core.set_prompt(0, "p2")
    assert of(actions, Resolve) == []  # p2 sets the prompt only: the image request rides along
    after = core.message(1, PromptAck("p1", True))
    assert after == [Resolve(p1), Send(SetImage(IMG, "p2", True))]
    assert core.message(2, SetImageAck(True)) == [Resolve(img), Resolve(p2)]
    assert (core.accepted_prompt, core.accepted_image) == ("p2", IMG)


def test_clearing_the_image_sends_set_image_with_null_data() -> None:
    core = generating(SessionCore(prompt="Anime", image=IMG))
    rid, actions = core.set_image(0, None)
    assert sent(actions) == [SetImage(None, "Anime", True)]
    assert core.message(1, SetImageAck(True)) == [Resolve(rid)]
    assert core.accepted_image is None


def test_a_request_made_during_the_handshake_is_sent_after_the_initial_ack() -> None:
    core = SessionCore(prompt="Anime")
    core.start(0)
    core.socket_opened(0)
    rid, actions = core.set_prompt(1, "Noir")
    assert sent(actions) == []
    assert core.message(2, PromptAck("Anime", True)) == [StartPeer(), Send(Prompt("Noir", True))]
    assert core.message(3, PromptAck("Noir", True)) == [Resolve(rid)]


def test_a_request_made_while_disconnected_only_changes_what_start_sends() -> None:
    core = SessionCore(prompt="Anime")
    rid, actions = core.set_prompt(0, "Noir", enhance=False)
    assert actions == [Resolve(rid)]
    assert core.desired_prompt == "Noir" and core.accepted_prompt is None
    core.start(1)
    assert core.socket_opened(1) == [Send(Prompt("Noir", False))]
    assert core.message(2, PromptAck("Noir", True)) == [StartPeer()]


def test_enhance_is_kept_unless_given() -> None:
    core = generating(SessionCore(prompt="Anime", enhance=False))
    _, actions = core.set_prompt(0, "Noir")
    assert sent(actions) == [Prompt("Noir", False)]
    core.message(1, PromptAck("Noir", True))
    _, actions = core.set_prompt(2, "Sketch", enhance=True)
    assert sent(actions) == [Prompt("Sketch", True)]
    assert core.enhance is True


def test_a_none_prompt_clears_the_prompt() -> None:
    core = generating(SessionCore(prompt="Anime", image=IMG))
    rid, actions = core.set_prompt(0, None)
    assert sent(actions) == [SetImage(IMG, None, True)]
    assert core.message(1, SetImageAck(True)) == [Resolve(rid)]
    assert (core.accepted_prompt, core.accepted_image) == (None, IMG)


def test_set_image_with_a_blank_prompt_clears_it_and_none_keeps_it() -> None:
    core = generating()
    _, actions = core.set_image(0, IMG, "")
    assert sent(actions) == [SetImage(IMG, None, True)]
    core.message(1, SetImageAck(True))
    core.set_prompt(2, "Noir")
    core.message(3, PromptAck("Noir", True))
    _, actions = core.set_image(4, IMG2)
    assert sent(actions) == [SetImage(IMG2, "Noir", True)]


@pytest.mark.parametrize("bad", ["", "   ", 42])
def test_a_blank_or_non_text_prompt_is_rejected_as_invalid_input(bad: Any) -> None:
    core = generating()
    rid, actions = core.set_prompt(0, bad)
    assert len(actions) == 1 and isinstance(actions[0], Reject)
    assert actions[0].request_id == rid and isinstance(actions[0].error, InvalidInput)
    assert core.desired_prompt == "Anime"


def test_a_blank_initial_prompt_means_no_prompt() -> None:
    core = SessionCore(prompt="  ")
    core.start(0)
    assert core.socket_opened(0) == [Send(SetImage(None, None, True))]


def test_an_image_over_10_mib_is_rejected_before_sending() -> None:
    core = generating()
    too_big = "A" * ((10 * 1024 * 1024 + 3) * 4 // 3)
    _, actions = core.set_image(0, too_big)
    assert len(actions) == 1 and isinstance(actions[0], Reject)
    assert isinstance(actions[0].error, InvalidInput) and "10 MiB" in actions[0].error.message
    with pytest.raises(InvalidInput):
        SessionCore(image=too_big)


# ---- reconnect ---------------------------------------------------------------------------------


def test_reconnect_backs_off_1_2_4_8_10_then_connection_lost() -> None:
    core = generating()
    now = 100.0
    closed = core.socket_closed(now, 1006, "abnormal")
    assert closed == [ClosePeer(), StateChanged(S.RECONNECTING)]  # the socket is already closed
    opened: list[OpenSocket] = []
    for delay in (1, 2, 4, 8, 10):
        assert core.next_deadline() == pytest.approx(now + delay)
        assert core.on_timer(now + delay - 0.01) == []
        now += delay
        actions = core.on_timer(now)
        opened += of(actions, OpenSocket)
        assert core.state is S.RECONNECTING
        failure = core.socket_closed(now, None, "connection refused")  # failed to open
        assert of(failure, OpenSocket) == []
    assert opened == [OpenSocket(1), OpenSocket(2), OpenSocket(3), OpenSocket(4), OpenSocket(5)]
    assert isinstance(errors(failure)[0], ConnectionLost)
    assert "5 retries" in errors(failure)[0].message
    assert failure[-1] == StateChanged(S.DISCONNECTED)
    assert core.next_deadline() is None
    assert core.on_timer(now + 100) == []


def test_the_retry_counter_resets_once_generating() -> None:
    core = generating()
    core.socket_closed(0, 1006, "")
    for t in (1, 3, 7):  # three failed retries (delays 1, 2, 4)
        core.on_timer(t)
        core.socket_closed(t, None, "")
    assert core.next_deadline() == 15  # the fourth delay, 8 s
    assert core.on_timer(15) == [OpenSocket(4)]
    core.socket_opened(15)
    core.message(15, PromptAck("Anime", True))
    core.peer_state(15, "connected")
    core.message(16, GenerationStarted())
    core.socket_closed(20, 1006, "")
    assert core.next_deadline() == 21  # back to 1 s
    assert core.on_timer(21) == [OpenSocket(1)]


def test_the_retry_policy_is_configurable() -> None:
    core = generating(SessionCore(prompt="Anime", retry=RetryPolicy(delays=(0.5,))))
    core.socket_closed(0, 1006, "")
    assert core.on_timer(0.5) == [OpenSocket(1)]
    assert isinstance(errors(core.socket_closed(0.6, None, ""))[0], ConnectionLost)


def test_a_failed_first_connect_retries_too() -> None:
    core = SessionCore(prompt="Anime")
    core.start(0)
    assert core.socket_closed(0.1, None, "refused") == [StateChanged(S.RECONNECTING)]
    assert core.on_timer(1.1) == [OpenSocket(1)]


def test_a_failed_peer_reconnects_and_a_disconnected_one_is_given_time() -> None:
    core = generating()
    assert core.peer_state(5, "disconnected") == []
    assert core.state is S.GENERATING
    actions = core.peer_state(6, "failed")
    assert actions == [CloseSocket(1000, ""), ClosePeer(), StateChanged(S.RECONNECTING)]
    assert core.on_timer(7) == [OpenSocket(1)]


def test_replay_after_a_reconnect_sends_the_latest_prompt_and_image() -> None:
    core = generating()
    p, _ = core.set_prompt(10, "Cyberpunk")
    core.message(11, PromptAck("Cyberpunk", True))
    img, actions = core.set_image(12, IMG)  # set while generating, still in flight at the loss
    assert sent(actions) == [SetImage(IMG, "Cyberpunk", True)]
    core.socket_closed(13, 1006, "")
    # Set while reconnecting: a prompt only; the image request is kept, not superseded.
    late, actions = core.set_prompt(13.5, "Noir")
    assert actions == []
    assert core.desired_prompt == "Noir" and core.desired_image == IMG
    core.on_timer(14)
    assert core.socket_opened(14) == [Send(SetImage(IMG, "Noir", True))]
    assert core.message(15, SetImageAck(True)) == [Resolve(img), Resolve(late), StartPeer()]
    assert (core.accepted_prompt, core.accepted_image) == ("Noir", IMG)
    assert p not in (img, late)


def test_replay_sends_the_accepted_state_not_the_initial_one() -> None:
    core = generating(SessionCore(prompt="Anime", image=IMG))
    core.set_prompt(1, "Later")
    core.message(2, PromptAck("Later", True))
    handshake = lose_and_reopen(core, 3)
    assert sent(handshake) == [SetImage(IMG, "Later", True)]


def test_requests_stay_pending_while_reconnecting_and_settle_with_the_replay() -> None:
    core = generating()
    rid, _ = core.set_prompt(0, "Noir")
    core.socket_closed(1, 1006, "")
    assert core.next_deadline() == 2  # no ack deadline while reconnecting
    core.on_timer(2)
    assert sent(core.socket_opened(2)) == [Prompt("Noir", True)]
    assert core.message(3, PromptAck("Noir", True)) == [Resolve(rid), StartPeer()]


def test_no_initial_ack_within_30_s_is_a_connection_failure() -> None:
    core = SessionCore(prompt="Anime")
    core.start(0)
    core.socket_opened(0)
    rid, _ = core.set_prompt(1, "Noir")
    assert core.on_timer(29.9) == []
    assert core.on_timer(30) == [CloseSocket(1000, ""), StateChanged(S.RECONNECTING)]
    assert core.on_timer(31) == [OpenSocket(1)]
    assert core.socket_opened(31) == [Send(Prompt("Noir", True))]  # the request rides on it
    assert Resolve(rid) in core.message(32, PromptAck("Noir", True))


def test_the_whole_connect_gives_up_after_300_s() -> None:
    core = SessionCore(prompt="Anime")
    core.start(0)
    core.socket_opened(0)
    core.message(1, PromptAck("Anime", True))
    assert core.next_deadline() == 300  # the peer never connects
    actions = core.on_timer(300)
    assert isinstance(errors(actions)[0], ConnectionLost)
    assert CloseSocket(1000, "") in actions and ClosePeer() in actions
    assert core.state is S.DISCONNECTED


def test_a_replay_refused_by_moderation_goes_on_and_restores_the_accepted_state() -> None:
    core = generating()
    rid, _ = core.set_prompt(0, "edgy")
    core.socket_closed(1, 1006, "")
    core.on_timer(2)
    assert sent(core.socket_opened(2)) == [Prompt("edgy", True)]
    actions = core.message(3, PromptAck("edgy", False, "Prompt rejected by moderation"))
    assert isinstance(actions[0], Reject) and actions[0].request_id == rid
    assert isinstance(actions[0].error, ModerationError)
    assert actions[1:] == [StartPeer(), Send(Prompt("Anime", True))]
    assert core.state is S.RECONNECTING
    assert core.accepted_prompt is None  # the fresh server session has nothing yet
    assert core.desired_prompt == "Anime"
    assert core.message(4, PromptAck("Anime", True)) == []  # nobody waited for it
    assert core.accepted_prompt == "Anime"


def test_a_rejected_initial_prompt_is_reported_and_the_handshake_goes_on() -> None:
    core = SessionCore(prompt="forbidden")
    core.start(0)
    core.socket_opened(0)
    actions = core.message(1, PromptAck("forbidden", False, "Prompt rejected by moderation"))
    assert len(errors(actions)) == 1 and isinstance(errors(actions)[0], ModerationError)
    assert actions[-1] == StartPeer()
    assert core.state is S.CONNECTING
    assert core.desired_prompt is None  # reverted to the accepted state (nothing)


# ---- errors that are never retried -------------------------------------------------------------


@pytest.mark.parametrize("code", [1013, 4013])  # 4013: as the signaling proxy relays it
@pytest.mark.parametrize("reason", ["Concurrent session limit reached.", "", "try again later"])
def test_close_1013_is_a_concurrency_limit_at_once(reason: str, code: int) -> None:
    core = SessionCore(prompt="Anime")
    core.start(0)
    core.socket_opened(0)
    rid, _ = core.set_prompt(0.5, "Noir")
    actions = core.socket_closed(1, code, reason)
    assert of(actions, OpenSocket) == []
    (error,) = errors(actions)
    assert isinstance(error, ConcurrencyLimit)
    assert of(actions, Reject) == [Reject(rid, error)]
    assert actions[-1] == StateChanged(S.DISCONNECTED)
    assert core.next_deadline() is None


def test_a_concurrency_reason_behind_close_1000_is_not_retried_either() -> None:
    core = generating()
    actions = core.socket_closed(1, 1000, "Concurrent session limit reached.")
    assert isinstance(errors(actions)[0], ConcurrencyLimit)
    assert core.next_deadline() is None


@pytest.mark.parametrize("text", ["Invalid API key", "401 Unauthorized", "origin not allowed"])
def test_a_permanent_error_message_ends_the_session_without_retry(text: str) -> None:
    core = generating()
    actions = core.message(1, Error(text))
    (error,) = errors(actions)
    assert isinstance(error, AuthenticationError)
    assert actions[:2] == [CloseSocket(1000, ""), ClosePeer()]
    assert core.state is S.DISCONNECTED
    assert core.socket_closed(1.1, 1000, "") == []  # the close that follows changes nothing
    assert core.next_deadline() is None


def test_a_permanent_close_reason_on_connect_is_not_retried() -> None:
    core = SessionCore(prompt="Anime")
    core.start(0)
    actions = core.socket_closed(0.2, None, "server rejected WebSocket connection: HTTP 401")
    assert isinstance(errors(actions)[0], AuthenticationError)
    assert core.next_deadline() is None


def test_a_transient_error_message_is_reported_and_the_close_after_it_retried() -> None:
    core = generating()
    actions = core.message(1, Error("upstream_capacity"))
    assert [type(e) for e in errors(actions)] == [DecartError]
    assert core.state is S.GENERATING
    core.socket_closed(1.1, 1011, "")
    assert core.state is S.RECONNECTING


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("insufficient_credits", InsufficientCredits),
        ("timeout", SessionEnded),
        ("moderation_violation", ModerationError),
        ("error", SessionEnded),
        ("disconnect", None),
    ],
)
def test_generation_ended(reason: str, kind: type[DecartError] | None) -> None:
    core = generating()
    core.message(1, GenerationTick(41))
    rid, _ = core.set_prompt(1.5, "Noir")
    actions = core.message(2, GenerationEnded(42, reason))
    assert actions[:2] == [Emit("generation_tick", 42), Emit("generation_ended", reason)]
    assert CloseSocket(1000, "") in actions and ClosePeer() in actions
    assert actions[-1] == StateChanged(S.DISCONNECTED)
    assert of(actions, OpenSocket) == [] and core.next_deadline() is None
    assert core.generation_seconds == 42
    if kind is None:
        assert errors(actions) == []
        assert of(actions, Resolve) == [Resolve(rid, superseded=True)]
    else:
        (error,) = errors(actions)
        assert type(error) is kind
        assert of(actions, Reject) == [Reject(rid, error)]
        if isinstance(error, SessionEnded):
            assert error.reason == reason


# ---- stop and ICE restart ----------------------------------------------------------------------


def test_stop_closes_socket_and_peer_and_rejects_nothing() -> None:
    core = generating()
    rid, _ = core.set_prompt(1, "Noir")
    actions = core.stop(2)
    assert actions == [
        CloseSocket(1000, ""),
        ClosePeer(),
        Resolve(rid, superseded=True),
        StateChanged(S.DISCONNECTED),
    ]
    assert core.next_deadline() is None
    assert core.stop(3) == []
    assert core.socket_closed(3, 1000, "") == []
    assert core.message(3, PromptAck("Noir", True)) == []
    # The latest values are kept for the next start().
    core.start(4)
    assert core.socket_opened(4) == [Send(Prompt("Noir", True))]


def test_stop_while_reconnecting_cancels_the_retry() -> None:
    core = generating()
    core.socket_closed(1, 1006, "")
    assert core.stop(1.5) == [StateChanged(S.DISCONNECTED)]
    assert core.on_timer(2) == []


def test_ice_restart_rebuilds_ice_and_re_offers() -> None:
    core = generating()
    turn = {"server_url": "turn:turn.example:3478", "username": "u", "credential": "c"}
    assert core.message(1, IceRestart(turn)) == [RestartIce(turn)]
    assert core.local_offer(1.1, "re-offer") == [Send(Offer("re-offer"))]
    assert core.message(1.2, IceCandidate(CAND)) == []  # held until the new answer
    assert core.message(1.3, Answer("re-answer")) == [
        ApplyAnswer("re-answer"),
        AddRemoteCandidate(CAND),
    ]
    assert core.state is S.GENERATING


def test_stale_events_after_a_loss_are_ignored() -> None:
    core = generating()
    core.socket_closed(1, 1006, "")
    assert core.message(1.1, GenerationTick(99)) == []
    assert core.peer_state(1.2, "failed") == []
    assert core.local_candidate(1.3, CAND) == []
    assert core.socket_opened(1.4) == []  # no socket was asked for yet
    assert core.generation_seconds == 0
