"""The connect bounds and retries (`Attempts`) on their own; in a session they are the
``attempt-*``, ``retry-*`` and ``timeout-*`` conformance traces. js/src/attempts.ts is the twin."""

from __future__ import annotations

import re
from pathlib import Path

from decart_widget.protocol import ConnectionLost, RetryPolicy
from decart_widget.protocol._attempts import AttemptLimits, Attempts

TS = Path(__file__).resolve().parents[2] / "js" / "src" / "attempts.ts"


def attempts(*delays: float) -> Attempts:
    return Attempts(AttemptLimits(connect=300, open=20, media=20, retry=RetryPolicy(delays)))


def test_an_attempt_is_bounded_by_its_socket_then_its_media() -> None:
    bounds = attempts(1)
    bounds.start(0)
    assert bounds.open(0) == 0 and bounds.next_deadline() == 20
    assert bounds.attempt_overdue(20) == ("no signaling connection within 20 s", False)
    bounds.socket_opened()
    assert bounds.next_deadline() == 300  # only the whole connect is left
    bounds.await_media(5)
    assert bounds.attempt_overdue(24.9) is None
    assert bounds.attempt_overdue(25) == ("no media connection within 20 s", True)
    bounds.media_connected()
    assert bounds.attempt_overdue(1e9) is None


def test_before_any_connection_a_failed_attempt_ends_the_session() -> None:
    bounds = attempts(1)
    bounds.start(0)
    error = bounds.unreachable("room failed", media=True)
    assert isinstance(error, ConnectionLost)
    assert error.message == "the video could not connect: room failed"
    bounds.reached(generating=False)
    assert bounds.unreachable("room failed", media=True) is None  # now a loss like any other


def test_retries_back_off_then_give_up_and_count_again_once_generating() -> None:
    bounds = attempts(1, 2)
    bounds.start(0)
    bounds.reached(generating=True)
    assert bounds.retry(10, "socket closed", live=True) is None
    assert not bounds.retry_due(10.9) and bounds.retry_due(11)
    assert bounds.open(11) == 1
    assert bounds.retry(12, "socket closed", live=False) is None
    assert bounds.next_deadline() == 14  # the retry comes before the new connect bound (310)
    error = bounds.retry(15, "socket closed", live=False)
    assert error is not None and error.message == "connection lost after 2 retries: socket closed"
    bounds.reached(generating=True)
    assert bounds.retries == 0


def test_time_in_the_servers_queue_does_not_count_against_the_connect_bound() -> None:
    bounds = attempts()
    bounds.start(0)
    bounds.postpone(100)
    assert bounds.connect_overdue(399.9) is None
    overdue = bounds.connect_overdue(400)
    assert overdue is not None and overdue.message == "could not connect within 300 s"


def test_the_typescript_twin_has_the_same_names() -> None:
    source = TS.read_text("utf-8")
    body = source[source.index("export class Attempts") :]
    names = re.findall(r"^  (\w+)(?:\(| = )", body, re.M)
    snake = {re.sub(r"[A-Z]", lambda c: "_" + c.group().lower(), n) for n in names}
    python = {n for n in vars(Attempts) if not n.startswith("_")} | set(vars(attempts()))
    assert snake - {"constructor"} == {n for n in python if not n.startswith("_")}
