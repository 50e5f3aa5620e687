"""Every message in docs/protocol.md: parsed, round-tripped; malformed frames rejected clearly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from decart_widget.protocol import ProtocolError
from decart_widget.protocol import messages as m

CANDIDATE = {
    "candidate": "candidate:1 1 UDP 2122252543 192.168.1.2 50000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "ab12",
}

CLIENT_FRAMES: list[tuple[dict[str, Any], m.Message]] = [
    (
        {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"},
        m.Offer("v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"),
    ),
    ({"type": "ice-candidate", "candidate": CANDIDATE}, m.IceCandidate(CANDIDATE)),
    ({"type": "ice-candidate", "candidate": None}, m.IceCandidate(None)),
    (
        {"type": "prompt", "prompt": "Anime style", "enhance_prompt": True},
        m.Prompt("Anime style", True),
    ),
    (
        {"type": "set_image", "image_data": "aGVsbG8=", "prompt": "Noir", "enhance_prompt": False},
        m.SetImage("aGVsbG8=", "Noir", False),
    ),
    (
        {"type": "set_image", "image_data": None, "prompt": None, "enhance_prompt": True},
        m.SetImage(None, None, True),
    ),
    ({"type": "livekit_join", "passthrough": False}, m.LivekitJoin(False)),
    # Every Gen-B join variant in the wild (docs/protocol.md), each re-encoded as it came.
    ({"type": "livekit_join"}, m.LivekitJoin()),
    ({"type": "livekit_join", "initial_state": None}, m.LivekitJoin(has_initial_state=True)),
    (
        {
            "type": "livekit_join",
            "initial_state": {"type": "prompt", "prompt": "Anime", "enhance_prompt": False},
        },
        m.LivekitJoin(initial_state=m.Prompt("Anime", False), has_initial_state=True),
    ),
    (
        {
            "type": "livekit_join",
            "passthrough": True,
            "initial_state": {
                "type": "set_image",
                "image_data": "aGVsbG8=",
                "prompt": None,
                "enhance_prompt": True,
            },
            "client_capabilities": {"frame_timing": True},
        },
        m.LivekitJoin(
            passthrough=True,
            initial_state=m.SetImage("aGVsbG8="),
            has_initial_state=True,
            client_capabilities={"frame_timing": True},
        ),
    ),
]

SERVER_FRAMES: list[tuple[dict[str, Any], m.Message]] = [
    ({"type": "answer", "sdp": "v=0\r\n"}, m.Answer("v=0\r\n")),
    ({"type": "ice-candidate", "candidate": CANDIDATE}, m.IceCandidate(CANDIDATE)),
    ({"type": "ice-candidate", "candidate": None}, m.IceCandidate(None)),
    (
        {"type": "session_id", "session_id": "s-1", "server_ip": "10.0.0.1", "server_port": 1234},
        m.SessionId("s-1", "10.0.0.1", 1234),
    ),
    (
        {"type": "prompt_ack", "prompt": "Anime style", "success": True, "error": None},
        m.PromptAck("Anime style", True, None),
    ),
    (
        {"type": "set_image_ack", "success": False, "error": "Image rejected by moderation"},
        m.SetImageAck(False, "Image rejected by moderation"),
    ),
    ({"type": "generation_started"}, m.GenerationStarted()),
    ({"type": "generation_tick", "seconds": 12}, m.GenerationTick(12)),
    (
        {"type": "generation_ended", "seconds": 42, "reason": "insufficient_credits"},
        m.GenerationEnded(42, "insufficient_credits"),
    ),
    ({"type": "error", "error": "Invalid API key"}, m.Error("Invalid API key")),
    (
        {"type": "queue_position", "position": 2, "queue_size": 5, "queue_position": 2},
        m.QueuePosition(2, 5),
    ),
    (
        {
            "type": "ice-restart",
            "turn_config": {"server_url": "turn:t:3478", "username": "u", "credential": "c"},
        },
        m.IceRestart({"server_url": "turn:t:3478", "username": "u", "credential": "c"}),
    ),
    (
        {
            "type": "livekit_room_info",
            "livekit_url": "wss://lk",
            "token": "jwt",
            "room_name": "r",
            "session_id": "s",
        },
        m.LivekitRoomInfo("wss://lk", "jwt", "r", "s"),
    ),
]


@pytest.mark.parametrize(("obj", "expected"), CLIENT_FRAMES, ids=lambda v: getattr(v, "type", ""))
def test_client_messages_parse_and_round_trip(obj: dict[str, Any], expected: m.Message) -> None:
    parsed = m.parse_client(json.dumps(obj))
    assert parsed == expected
    assert json.loads(m.encode(parsed)) == obj
    assert m.parse_client(m.encode(parsed)) == parsed


@pytest.mark.parametrize(("obj", "expected"), SERVER_FRAMES, ids=lambda v: getattr(v, "type", ""))
def test_server_messages_parse_and_round_trip(obj: dict[str, Any], expected: m.Message) -> None:
    parsed = m.parse_server(json.dumps(obj))
    assert parsed == expected
    assert json.loads(m.encode(parsed)) == obj
    assert m.parse_server(m.encode(parsed)) == parsed


def test_bytes_frames_are_accepted() -> None:
    assert m.parse_server(b'{"type":"generation_started"}') == m.GenerationStarted()


def test_encode_is_compact_json() -> None:
    assert m.encode(m.Prompt("a", False)) == '{"type":"prompt","prompt":"a","enhance_prompt":false}'


def test_optional_fields_take_defaults() -> None:
    assert m.parse_client('{"type":"prompt","prompt":"x"}') == m.Prompt("x", True)
    assert m.parse_client('{"type":"set_image","image_data":null}') == m.SetImage(None, None, True)
    assert m.parse_server('{"type":"prompt_ack","prompt":"x","success":true}') == m.PromptAck(
        "x", True, None
    )
    assert m.parse_server('{"type":"session_id","session_id":"s"}') == m.SessionId("s")
    assert m.parse_server('{"type":"ice-restart"}') == m.IceRestart(None)


def test_session_id_without_server_address_is_encoded_without_it() -> None:
    assert json.loads(m.encode(m.SessionId("s"))) == {"type": "session_id", "session_id": "s"}


def test_bare_candidate_string_is_accepted() -> None:
    frame = '{"type":"ice-candidate","candidate":"candidate:1 1 UDP 1 h 1 typ host","sdpMid":"0"}'
    parsed = m.parse_server(frame)
    assert isinstance(parsed, m.IceCandidate)
    assert parsed.candidate is not None
    assert parsed.candidate["candidate"] == "candidate:1 1 UDP 1 h 1 typ host"
    assert parsed.candidate["sdpMid"] == "0"


def test_nested_error_text_is_unwrapped() -> None:
    parsed = m.parse_server('{"type":"error","error":{"message":"Invalid API key"}}')
    assert parsed == m.Error("Invalid API key")
    assert m.parse_server('{"type":"error"}') == m.Error("unknown error")


def test_generation_ended_with_unknown_reason_is_kept_and_missing_reason_is_error() -> None:
    parse = m.parse_server
    assert parse('{"type":"generation_ended","seconds":3,"reason":"x"}') == m.GenerationEnded(
        3, "x"
    )
    assert parse('{"type":"generation_ended","seconds":3}') == m.GenerationEnded(3, "error")
    assert m.parse_server('{"type":"generation_ended"}') == m.GenerationEnded(0, "error")


# ---- ticks: floats accepted, whole numbers sent -----------------------------------------------


def test_float_ticks_are_accepted_and_sent_as_whole_numbers() -> None:
    tick = m.parse_server('{"type":"generation_tick","seconds":12.7}')
    assert tick == m.GenerationTick(12.7)
    frame = m.encode(tick)
    assert json.loads(frame) == {"type": "generation_tick", "seconds": 12}
    assert '"seconds":12}' in frame  # an int on the wire, not 12.0


def test_generation_ended_seconds_are_sent_as_whole_numbers() -> None:
    frame = m.encode(m.GenerationEnded(41.9, "disconnect"))
    assert '"seconds":41,' in frame


# ---- unknown and malformed ---------------------------------------------------------------------


def test_unknown_types_give_unknown_and_forward_unchanged() -> None:
    obj = {"type": "brand_new_thing", "x": [1, 2]}
    for parse in (m.parse_client, m.parse_server):
        parsed = parse(json.dumps(obj))
        assert isinstance(parsed, m.Unknown)
        assert parsed.type == "brand_new_thing"
        assert json.loads(m.encode(parsed)) == obj


def test_server_only_types_are_unknown_to_the_client_parser_and_vice_versa() -> None:
    assert isinstance(m.parse_client('{"type":"answer","sdp":"x"}'), m.Unknown)
    assert isinstance(m.parse_server('{"type":"offer","sdp":"x"}'), m.Unknown)


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ("not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('"prompt"', "must be a JSON object, got str"),
        ("{}", "no string 'type'"),
        ('{"type": 5}', "no string 'type'"),
    ],
)
def test_malformed_frames_raise_protocol_error(frame: str | bytes, needle: str) -> None:
    for parse in (m.parse_client, m.parse_server):
        with pytest.raises(ProtocolError, match=needle):
            parse(frame)


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ('{"type":"prompt"}', "'prompt' message needs a string 'prompt', got nothing"),
        ('{"type":"prompt","prompt":3}', "needs a string 'prompt', got int"),
        ('{"type":"prompt","prompt":"x","enhance_prompt":"yes"}', "boolean 'enhance_prompt'"),
        ('{"type":"set_image","image_data":5}', "'image_data' must be a string or null, got int"),
        ('{"type":"set_image","image_data":null,"prompt":[]}', "'prompt' must be a string or null"),
        ('{"type":"offer","sdp":null}', "'offer' message needs a string 'sdp'"),
        ('{"type":"ice-candidate","candidate":7}', "bad candidate int"),
        ('{"type":"ice-candidate","candidate":{"candidate":1}}', "bad candidate dict"),
        ('{"type":"livekit_join","passthrough":1}', "boolean 'passthrough', got int"),
        ('{"type":"livekit_join","initial_state":3}', "'initial_state' must be a prompt or"),
        ('{"type":"livekit_join","initial_state":{"type":"offer","sdp":"v"}}', "got dict"),
        ('{"type":"livekit_join","initial_state":{"prompt":"x"}}', "'initial_state' must be"),
        ('{"type":"livekit_join","initial_state":{"type":"prompt"}}', "string 'prompt'"),
        ('{"type":"livekit_join","client_capabilities":[]}', "must be an object, got list"),
    ],
)
def test_client_messages_with_wrong_field_types_raise(frame: str, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        m.parse_client(frame)


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ('{"type":"answer"}', "'answer' message needs a string 'sdp', got nothing"),
        ('{"type":"prompt_ack","prompt":"x"}', "needs a boolean 'success', got nothing"),
        ('{"type":"prompt_ack","success":true}', "needs a string 'prompt'"),
        ('{"type":"set_image_ack","success":"true"}', "boolean 'success', got str"),
        ('{"type":"session_id","session_id":1}', "string 'session_id', got int"),
        ('{"type":"generation_tick","seconds":"12"}', "number 'seconds', got str"),
        ('{"type":"generation_tick","seconds":true}', "number 'seconds', got bool"),
        ('{"type":"generation_tick"}', "number 'seconds', got nothing"),
        ('{"type":"generation_tick","seconds":NaN}', "finite number 'seconds'"),
        ('{"type":"generation_ended","seconds":Infinity}', "finite number 'seconds'"),
        ('{"type":"generation_ended","seconds":"1"}', "number 'seconds', got str"),
        ('{"type":"queue_position","position":"2"}', "number 'position', got str"),
        ('{"type":"livekit_room_info","token":"t"}', "string 'livekit_url'"),
    ],
)
def test_server_messages_with_wrong_field_types_raise(frame: str, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        m.parse_server(frame)


def test_queue_position_reads_the_legacy_key_too() -> None:
    legacy = '{"type":"queue_position","queue_position":3,"queue_size":4}'
    assert m.parse_server(legacy) == m.QueuePosition(3, 4)


def test_protocol_error_is_a_decart_error_of_kind_protocol() -> None:
    with pytest.raises(ProtocolError) as info:
        m.parse_server("{")
    assert info.value.kind == "protocol"
    assert "JSON" in info.value.message


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"prompt","prompt":"Noir"}',
        ' {"a":1}',
        '{"a":1}\n',
        '{"a":1}x',
        '{"a":1}{"b":2}',
        "",
        "NaN",
        "[1,2]",
        '"\\ud800"',
        '{"a":"\\u00e9\\n"}',
        "\ufeff{}",
        "1e400",
        "[" * 100_000 + "]" * 100_000,
        b'{"a":1}',
    ],
)
def test_load_json_is_json_loads(frame: str | bytes) -> None:
    """`load_json`'s shortcut (the C scanner alone) gives what `json.loads` gives: the same
    value, or the same error."""

    def outcome(load: Any) -> tuple[str, str]:
        try:
            return "value", repr(load(frame))
        except (ValueError, RecursionError) as exc:
            return type(exc).__name__, str(exc)

    assert outcome(m.load_json) == outcome(json.loads)
