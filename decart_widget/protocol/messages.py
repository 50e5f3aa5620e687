"""Every message of the realtime protocol (docs/protocol.md): parse, validate, serialise.

`parse_client` / `parse_server` take one WebSocket text frame and return a typed message.
Unknown ``type`` values give `Unknown` (callers ignore it); malformed frames raise
`ProtocolError` with a clear reason. `encode` turns a message back into a JSON text frame.
We are liberal in what we accept (floats for seconds, missing optional fields) and strict in
what we send (whole seconds, every field present).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeGuard

from ._constants import END_REASONS as END_REASONS
from ._errors import ProtocolError

JSON = dict[str, Any]


# ---- client -> server -------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    sdp: str
    type: Literal["offer"] = "offer"


@dataclass(frozen=True)
class Answer:
    sdp: str
    type: Literal["answer"] = "answer"


@dataclass(frozen=True)
class IceCandidate:
    """A trickled ICE candidate; ``candidate=None`` marks the end of candidates."""

    candidate: JSON | None
    type: Literal["ice-candidate"] = "ice-candidate"


@dataclass(frozen=True)
class Prompt:
    prompt: str
    enhance_prompt: bool = True
    type: Literal["prompt"] = "prompt"


@dataclass(frozen=True)
class SetImage:
    """Replace the reference image (``image_data`` raw base64, or None to clear) and prompt."""

    image_data: str | None
    prompt: str | None = None
    enhance_prompt: bool = True
    type: Literal["set_image"] = "set_image"


@dataclass(frozen=True)
class LivekitJoin:
    """Ask for a LiveKit room (Gen-B, docs/protocol.md). Every variant in the wild parses:
    bare, ``passthrough`` (None: no such key), ``initial_state`` (a ``prompt`` or ``set_image``
    message, or null; ``has_initial_state`` tells null from an absent key) and
    ``client_capabilities`` (kept as sent)."""

    passthrough: bool | None = None
    initial_state: Prompt | SetImage | None = None
    has_initial_state: bool = False
    client_capabilities: JSON | None = None
    type: Literal["livekit_join"] = "livekit_join"


# ---- server -> client -------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionId:
    session_id: str
    server_ip: str | None = None
    server_port: int | None = None
    type: Literal["session_id"] = "session_id"


@dataclass(frozen=True)
class PromptAck:
    prompt: str
    success: bool
    error: str | None = None
    type: Literal["prompt_ack"] = "prompt_ack"


@dataclass(frozen=True)
class SetImageAck:
    success: bool
    error: str | None = None
    type: Literal["set_image_ack"] = "set_image_ack"


@dataclass(frozen=True)
class GenerationStarted:
    type: Literal["generation_started"] = "generation_started"


@dataclass(frozen=True)
class GenerationTick:
    seconds: float
    type: Literal["generation_tick"] = "generation_tick"


@dataclass(frozen=True)
class GenerationEnded:
    seconds: float
    reason: str
    type: Literal["generation_ended"] = "generation_ended"


@dataclass(frozen=True)
class Error:
    error: str
    type: Literal["error"] = "error"


@dataclass(frozen=True)
class QueuePosition:
    """Gen-B: the session waits for capacity. On the wire the position also goes under the legacy
    key ``queue_position`` (some clients read that one)."""

    position: int
    queue_size: int | None = None
    type: Literal["queue_position"] = "queue_position"


@dataclass(frozen=True)
class IceRestart:
    turn_config: JSON | None
    type: Literal["ice-restart"] = "ice-restart"


@dataclass(frozen=True)
class LivekitRoomInfo:
    livekit_url: str
    token: str
    room_name: str | None = None
    session_id: str | None = None
    type: Literal["livekit_room_info"] = "livekit_room_info"


@dataclass(frozen=True)
class Unknown:
    """A message whose ``type`` we do not know; kept whole so relays can forward it."""

    type: str
    raw: JSON = field(default_factory=dict)


ClientMessage: TypeAlias = Offer | IceCandidate | Prompt | SetImage | LivekitJoin | Unknown
ServerMessage: TypeAlias = (
    Answer
    | IceCandidate
    | SessionId
    | PromptAck
    | SetImageAck
    | GenerationStarted
    | GenerationTick
    | GenerationEnded
    | Error
    | QueuePosition
    | IceRestart
    | LivekitRoomInfo
    | Unknown
)
Message: TypeAlias = ClientMessage | ServerMessage


# ---- field readers (clear errors on bad shapes) -------------------------------------------------


def _str(obj: JSON, key: str, kind: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{kind!r} message needs a string {key!r}, got {_shape(value)}")
    return value


def _opt_str(obj: JSON, key: str, kind: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ProtocolError(
            f"{kind!r} message: {key!r} must be a string or null, got {_shape(value)}"
        )
    return value


def _bool(obj: JSON, key: str, kind: str, default: bool | None = None) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError(f"{kind!r} message needs a boolean {key!r}, got {_shape(value)}")
    return value


def _number(obj: JSON, key: str, kind: str, default: float | None = None) -> float:
    value = obj.get(key, default)
    if not _is_finite_number(value):
        raise ProtocolError(f"{kind!r} message needs a finite number {key!r}, got {_shape(value)}")
    return value


def _is_finite_number(value: object) -> TypeGuard[float]:
    """An int or float that is not a bool, NaN or infinite (json.loads accepts NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def _shape(value: object) -> str:
    if value is None:
        return "nothing"
    return type(value).__name__


def _candidate(obj: JSON) -> JSON | None:
    value = obj.get("candidate")
    if value is None:
        return None
    if isinstance(value, str):  # some clients send the bare candidate line
        return {
            "candidate": value,
            "sdpMid": obj.get("sdpMid"),
            "sdpMLineIndex": obj.get("sdpMLineIndex"),
        }
    if not isinstance(value, dict) or not isinstance(value.get("candidate", ""), str):
        raise ProtocolError(f"'ice-candidate' message: bad candidate {_shape(value)}")
    return value


#: The C scanner `json.loads` ends in (a decoder's defaults: the same as `json.loads`'s).
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__, not typed


def load_json(frame: str | bytes) -> Any:
    """``json.loads(frame)``, without its Python layers when the frame is a single JSON value
    with nothing around it (a relay parses every frame); anything else (whitespace around it,
    bytes, an error) takes `json.loads` itself, which also makes the error."""
    if type(frame) is str:
        try:
            obj, end = _SCAN_ONCE(frame, 0)
        except (StopIteration, ValueError, RecursionError):
            pass
        else:
            if end == len(frame):
                return obj
    return json.loads(frame)


def decode_object(frame: str | bytes) -> JSON:
    """Decode one text frame into a JSON object with a string ``type``."""
    try:
        obj = load_json(frame)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"frame must be a JSON object, got {_shape(obj)}")
    if not isinstance(obj.get("type"), str):
        raise ProtocolError("frame has no string 'type'")
    return obj


def parse_client(frame: str | bytes) -> ClientMessage:
    """Parse a frame a client sent to the server."""
    return client_message(decode_object(frame))


def client_message(obj: JSON) -> ClientMessage:
    """The typed client message of an already decoded frame (see `decode_object`)."""
    kind = obj["type"]
    if kind == "offer":
        return Offer(sdp=_str(obj, "sdp", kind))
    if kind == "ice-candidate":
        return IceCandidate(candidate=_candidate(obj))
    if kind == "prompt":
        text = _str(obj, "prompt", kind)
        return Prompt(prompt=text, enhance_prompt=_bool(obj, "enhance_prompt", kind, True))
    if kind == "set_image":
        return SetImage(
            image_data=_opt_str(obj, "image_data", kind),
            prompt=_opt_str(obj, "prompt", kind),
            enhance_prompt=_bool(obj, "enhance_prompt", kind, True),
        )
    if kind == "livekit_join":
        return _livekit_join(obj)
    return Unknown(type=kind, raw=obj)


def _livekit_join(obj: JSON) -> LivekitJoin:
    kind = "livekit_join"
    passthrough = None if obj.get("passthrough") is None else _bool(obj, "passthrough", kind)
    capabilities = obj.get("client_capabilities")
    if capabilities is not None and not isinstance(capabilities, dict):
        raise ProtocolError(
            f"{kind!r} message: 'client_capabilities' must be an object, got {_shape(capabilities)}"
        )
    initial: Prompt | SetImage | None = None
    raw_state = obj.get("initial_state")
    if raw_state is not None:
        typed = isinstance(raw_state, dict) and isinstance(raw_state.get("type"), str)
        state = client_message(raw_state) if typed else None
        if not isinstance(state, (Prompt, SetImage)):
            raise ProtocolError(
                f"{kind!r} message: 'initial_state' must be a prompt or set_image message or "
                f"null, got {_shape(raw_state)}"
            )
        initial = state
    return LivekitJoin(
        passthrough=passthrough,
        initial_state=initial,
        has_initial_state="initial_state" in obj,
        client_capabilities=capabilities,
    )


def parse_server(frame: str | bytes) -> ServerMessage:
    """Parse a frame the server sent to a client."""
    return server_message(decode_object(frame))


def server_message(obj: JSON) -> ServerMessage:
    """The typed server message of an already decoded frame (see `decode_object`)."""
    kind = obj["type"]
    if kind == "answer":
        return Answer(sdp=_str(obj, "sdp", kind))
    if kind == "ice-candidate":
        return IceCandidate(candidate=_candidate(obj))
    if kind == "session_id":
        port = obj.get("server_port")
        return SessionId(
            session_id=_str(obj, "session_id", kind),
            server_ip=obj.get("server_ip") if isinstance(obj.get("server_ip"), str) else None,
            server_port=port if isinstance(port, int) and not isinstance(port, bool) else None,
        )
    if kind == "prompt_ack":
        return PromptAck(
            prompt=_str(obj, "prompt", kind),
            success=_bool(obj, "success", kind),
            error=_error_text(obj.get("error")),
        )
    if kind == "set_image_ack":
        return SetImageAck(success=_bool(obj, "success", kind), error=_error_text(obj.get("error")))
    if kind == "generation_started":
        return GenerationStarted()
    if kind == "generation_tick":
        return GenerationTick(seconds=_number(obj, "seconds", kind))
    if kind == "generation_ended":
        reason = obj.get("reason", "error")
        return GenerationEnded(
            seconds=_number(obj, "seconds", kind, 0),
            reason=reason if isinstance(reason, str) else "error",
        )
    if kind == "error":
        return Error(error=_error_text(obj.get("error")) or "unknown error")
    if kind == "queue_position":
        size = obj.get("queue_size")
        key = "position" if "position" in obj else "queue_position"  # the legacy key
        return QueuePosition(
            position=int(_number(obj, key, kind)),
            queue_size=int(size) if _is_finite_number(size) else None,
        )
    if kind == "ice-restart":
        turn = obj.get("turn_config")
        return IceRestart(turn_config=turn if isinstance(turn, dict) else None)
    if kind == "livekit_room_info":
        return LivekitRoomInfo(
            livekit_url=_str(obj, "livekit_url", kind),
            token=_str(obj, "token", kind),
            room_name=obj.get("room_name") if isinstance(obj.get("room_name"), str) else None,
            session_id=obj.get("session_id") if isinstance(obj.get("session_id"), str) else None,
        )
    return Unknown(type=kind, raw=obj)


def _error_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # some servers nest {"message": ...}
        inner = value.get("message") or value.get("error")
        if isinstance(inner, str):
            return inner
    return json.dumps(value)


def to_dict(message: Message) -> JSON:
    """The JSON object of a message, exactly as it goes on the wire."""
    if isinstance(message, Unknown):
        return dict(message.raw) or {"type": message.type}
    if isinstance(message, GenerationTick):
        return {"type": message.type, "seconds": int(message.seconds)}
    if isinstance(message, GenerationEnded):
        return {"type": message.type, "seconds": int(message.seconds), "reason": message.reason}
    if isinstance(message, LivekitJoin):
        return _livekit_join_dict(message)
    if isinstance(message, QueuePosition):
        return {
            "type": message.type,
            "position": message.position,
            "queue_size": message.queue_size,
            "queue_position": message.position,
        }
    body: JSON = {"type": message.type}
    for name in message.__dataclass_fields__:
        if name != "type":
            body[name] = getattr(message, name)
    if isinstance(message, SessionId):
        body = {k: v for k, v in body.items() if v is not None or k == "session_id"}
    return body


def _livekit_join_dict(message: LivekitJoin) -> JSON:
    """Only the keys the join was given: each variant goes out as it came in."""
    body: JSON = {"type": message.type}
    if message.passthrough is not None:
        body["passthrough"] = message.passthrough
    if message.has_initial_state or message.initial_state is not None:
        state = message.initial_state
        body["initial_state"] = to_dict(state) if state is not None else None
    if message.client_capabilities is not None:
        body["client_capabilities"] = message.client_capabilities
    return body


def encode(message: Message) -> str:
    """Serialise a message into one WebSocket text frame."""
    return json.dumps(to_dict(message), separators=(",", ":"))
