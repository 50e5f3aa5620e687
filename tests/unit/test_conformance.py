"""The shared conformance traces (``conformance/traces/*.json``) replayed on the Python core.

Every trace is a list of inputs to a fresh `SessionCore`, each with its ``now``, and the actions
expected back, in order; js/tests/conformance.test.ts replays the same files on the TypeScript
core. The format is described in conformance/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from decart_widget.protocol import (
    Action,
    AddRemoteCandidate,
    ApplyAnswer,
    ClosePeer,
    CloseSocket,
    DecartError,
    Emit,
    Fail,
    JoinRoom,
    OpenSocket,
    Resolve,
    RestartIce,
    RetryPolicy,
    Send,
    SessionCore,
    SessionEnded,
    StartPeer,
    StateChanged,
)
from decart_widget.protocol.messages import parse_server, to_dict

TRACES = Path(__file__).resolve().parents[2] / "conformance" / "traces"
INPUTS = {
    "start",
    "stop",
    "socket_opened",
    "socket_closed",
    "message",
    "local_offer",
    "local_candidate",
    "peer_state",
    "set_prompt",
    "set_image",
    "on_timer",
}
ACTIONS = {
    "OpenSocket",
    "CloseSocket",
    "Send",
    "StartPeer",
    "ClosePeer",
    "JoinRoom",
    "ApplyAnswer",
    "AddRemoteCandidate",
    "RestartIce",
    "StateChanged",
    "Resolve",
    "Fail",
    "Emit",
}

Trace = dict[str, Any]


def load_traces() -> list[tuple[str, Trace]]:
    paths = sorted(TRACES.glob("*.json"))
    return [(path.stem, json.loads(path.read_text("utf-8"))) for path in paths]


def expand(value: Any) -> Any:
    """``{"repeat": s, "times": n, "suffix": t}`` stands for ``s * n + t`` (a large image in a
    small file), anywhere in a value."""
    if isinstance(value, dict):
        if "repeat" in value and "times" in value:
            return value["repeat"] * value["times"] + value.get("suffix", "")
        return {key: expand(item) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item) for item in value]
    return value


def make_core(options: dict[str, Any]) -> SessionCore:
    delays = options.get("retry_delays")
    return SessionCore(
        prompt=options.get("prompt"),
        image=expand(options.get("image")),
        enhance=options.get("enhance", True),
        prompt_ack_timeout=options.get("prompt_ack_timeout", 15.0),
        image_ack_timeout=options.get("image_ack_timeout", 30.0),
        initial_ack_timeout=options.get("initial_ack_timeout", 30.0),
        connect_timeout=options.get("connect_timeout", 300.0),
        retry=None if delays is None else RetryPolicy(tuple(delays)),
        transport=options.get("transport", "webrtc"),
        room_info_timeout=options.get("room_info_timeout", 15.0),
        signaling_open_timeout=options.get("signaling_open_timeout", 20.0),
        media_connect_timeout=options.get("media_connect_timeout", 20.0),
    )


def feed(core: SessionCore, step: dict[str, Any], names: dict[int, str]) -> list[Action]:
    """Give one input to the core; record the symbolic name of a new request."""
    now = float(step["now"])
    match step["input"]:
        case "start":
            return core.start(now)
        case "stop":
            return core.stop(now)
        case "socket_opened":
            return core.socket_opened(now)
        case "socket_closed":
            return core.socket_closed(now, step["code"], step.get("reason", ""))
        case "message":
            return core.message(now, parse_server(json.dumps(step["message"])))
        case "local_offer":
            return core.local_offer(now, step["sdp"])
        case "local_candidate":
            return core.local_candidate(now, step["candidate"])
        case "peer_state":
            return core.peer_state(now, step["state"])
        case "on_timer":
            return core.on_timer(now)
        case "set_prompt":
            request_id, actions = core.set_prompt(now, step["text"], step.get("enhance"))
        case "set_image":
            request_id, actions = core.set_image(
                now, expand(step["image"]), step.get("prompt"), step.get("enhance")
            )
        case other:
            raise AssertionError(f"unknown input {other!r}")
    name = step["request"]
    assert name not in names.values(), f"request name {name!r} used twice"
    names[request_id] = name
    return actions


def error_json(error: DecartError) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": error.kind, "message": error.message}
    if isinstance(error, SessionEnded):
        body["reason"] = error.reason
    return body


def as_json(action: Action, names: dict[int, str]) -> dict[str, Any]:
    """The trace form of an action."""
    match action:
        case OpenSocket(attempt):
            return {"action": "OpenSocket", "attempt": attempt}
        case CloseSocket(code, reason):
            return {"action": "CloseSocket", "code": code, "reason": reason}
        case Send(message):
            return {"action": "Send", "message": to_dict(message)}
        case StartPeer():
            return {"action": "StartPeer"}
        case ClosePeer():
            return {"action": "ClosePeer"}
        case JoinRoom(url, token, room_name, session_id):
            return {
                "action": "JoinRoom",
                "url": url,
                "token": token,
                "room_name": room_name,
                "session_id": session_id,
            }
        case ApplyAnswer(sdp):
            return {"action": "ApplyAnswer", "sdp": sdp}
        case AddRemoteCandidate(candidate):
            return {"action": "AddRemoteCandidate", "candidate": candidate}
        case RestartIce(turn_config):
            return {"action": "RestartIce", "turn_config": turn_config}
        case StateChanged(state):
            return {"action": "StateChanged", "state": state.value}
        case Resolve(request_id, superseded):
            name = names.get(request_id, f"#{request_id}")
            return {"action": "Resolve", "request": name, "superseded": superseded}
        case Fail(request_id, error):
            name = names.get(request_id, f"#{request_id}")
            return {"action": "Fail", "request": name, "error": error_json(error)}
        case Emit("error", DecartError() as error):
            return {"action": "Emit", "name": "error", "error": error_json(error)}
        case Emit(name, value):
            return {"action": "Emit", "name": name, "value": value}
    raise AssertionError(f"unknown action {action!r}")


def shaped_like(actual: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """``actual`` with its error cut to what ``expected`` checks (kind always; message if given;
    ``contains``: a substring of the message)."""
    spec = expected.get("error")
    error = actual.get("error")
    if not isinstance(spec, dict) or not isinstance(error, dict):
        return actual
    shaped = {key: error[key] for key in spec if key in error}
    if "contains" in spec:
        contained = spec["contains"] in error["message"]
        shaped["contains"] = spec["contains"] if contained else f"not in {error['message']!r}"
    return {**actual, "error": shaped}


def observe(core: SessionCore, then: dict[str, Any]) -> dict[str, Any]:
    """The core's properties named in a step's ``then``."""
    seen: dict[str, Any] = {}
    for key in then:
        if key == "state":
            seen[key] = core.state.value
        elif key == "next_deadline":
            deadline = core.next_deadline()
            seen[key] = None if deadline is None else round(deadline, 6)
        elif key == "accepted":
            seen[key] = {"prompt": core.accepted_prompt, "image": core.accepted_image}
        elif key == "desired":
            seen[key] = {"prompt": core.desired_prompt, "image": core.desired_image}
        elif key == "enhance":
            seen[key] = core.enhance
        elif key == "generation_seconds":
            seen[key] = core.generation_seconds
        elif key == "session_id":
            seen[key] = core.session_id
        elif key == "queue":
            position, size = core.queue_position, core.queue_size
            seen[key] = None if position is None else {"position": position, "size": size}
        else:
            raise AssertionError(f"unknown property {key!r} in 'then'")
    return seen


def replay(trace: Trace) -> None:
    core = make_core(trace.get("core", {}))
    names: dict[int, str] = {}
    for index, step in enumerate(trace["steps"]):
        where = f"step {index} ({step['input']} at {step['now']})"
        actions = [as_json(action, names) for action in feed(core, step, names)]
        if "expect" in step:
            expected = expand(step["expect"])
            shaped = [shaped_like(a, e) for a, e in zip(actions, expected, strict=False)]
            got = shaped + actions[len(expected) :]
            assert got == expected, where
        if "then" in step:
            then = step["then"]
            if then.get("next_deadline") is not None:
                then = {**then, "next_deadline": round(then["next_deadline"], 6)}
            assert observe(core, then) == then, where


ALL = load_traces()


@pytest.mark.parametrize("trace", [trace for _, trace in ALL], ids=[name for name, _ in ALL])
def test_trace(trace: Trace) -> None:
    replay(trace)


def test_the_traces_cover_every_input_and_action() -> None:
    traces = [trace for _, trace in ALL]
    assert len(traces) >= 40
    steps = [step for trace in traces for step in trace["steps"]]
    assert {step["input"] for step in steps} == INPUTS
    expected = [action for step in steps for action in step.get("expect", [])]
    assert {action["action"] for action in expected} == ACTIONS
    assert all(trace.get("title") for trace in traces)
