"""``ice_servers=``: the checks on a user's list, a function called for fresh credentials, and the
command line's ``--ice-server`` URLs (docs/where-it-works.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from decart_widget._ice import (
    ice_server_from_url,
    resolve_ice_servers,
    resolve_ice_servers_now,
    validate_ice_servers,
)
from decart_widget.protocol._errors import InvalidInput

TURN = {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}


def test_a_valid_list_is_copied_with_urls_as_a_list() -> None:
    servers = validate_ice_servers([{"urls": "stun:stun.example.org:3478"}, TURN])
    assert servers == [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"},
    ]
    assert validate_ice_servers([]) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("stun:x", "must be a list of dicts"),
        ({"urls": "stun:x"}, "must be a list of dicts"),
        (["stun:x"], r"ice_servers\[0\] must be a dict"),
        ([{"url": "stun:x"}], r"unknown keys \['url'\]"),
        ([{"urls": []}], "non-empty list of URLs"),
        ([{"urls": "http://x"}], "is not a stun:, stuns:, turn: or turns: URL"),
        ([{"urls": "stun:x"}, {"urls": "turn:x:3478"}], r"ice_servers\[1\]: a TURN server needs"),
        ([{"urls": "turn:x", "username": "u", "credential": 5}], "'credential'] must be a string"),
    ],
)
def test_a_wrong_list_says_which_entry_and_why(value: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_ice_servers(value)


def test_a_function_is_called_each_time_and_a_coroutine_function_awaited() -> None:
    calls: list[int] = []

    def fresh() -> list[dict[str, Any]]:
        calls.append(1)
        return [{**TURN, "credential": f"p{len(calls)}"}]

    async def fresh_async() -> list[dict[str, Any]]:
        return fresh()

    assert resolve_ice_servers_now(fresh)[0]["credential"] == "p1"
    assert asyncio.run(resolve_ice_servers(fresh))[0]["credential"] == "p2"
    assert asyncio.run(resolve_ice_servers(fresh_async))[0]["credential"] == "p3"
    assert asyncio.run(resolve_ice_servers(None)) == []
    with pytest.raises(InvalidInput, match="must be a list"):
        asyncio.run(resolve_ice_servers(lambda: "turn:x"))
    with pytest.raises(InvalidInput, match="plain function"):
        resolve_ice_servers_now(fresh_async)


def test_command_line_urls_carry_turn_credentials() -> None:
    assert ice_server_from_url("stun:stun.example.org:3478") == {
        "urls": ["stun:stun.example.org:3478"]
    }
    assert ice_server_from_url("turn:alice:s3cret@turn.example.org:3478?transport=tcp") == {
        "urls": ["turn:turn.example.org:3478?transport=tcp"],
        "username": "alice",
        "credential": "s3cret",
    }
    with pytest.raises(InvalidInput, match="user:password@host"):
        ice_server_from_url("turn:alice@turn.example.org:3478")
    with pytest.raises(InvalidInput, match="needs a username"):
        ice_server_from_url("turn:turn.example.org:3478")


def test_the_emulator_command_takes_repeated_ice_servers() -> None:
    from decart_widget.cli import build_parser

    args = build_parser().parse_args(
        ["emulator", "--ice-server", "stun:s:3478", "--ice-server", "turn:a:b@t:3478"]
    )
    assert [ice_server_from_url(url) for url in args.ice_server] == [
        {"urls": ["stun:s:3478"]},
        {"urls": ["turn:t:3478"], "username": "a", "credential": "b"},
    ]
    assert build_parser().parse_args(["emulator"]).ice_server == []
