"""TokenMinter input validation and response handling (no network: httpx's MockTransport is
not used; these paths fail before any request). Requests against the real emulator endpoint are
in tests/integration/test_tokens.py."""

import pytest

import decart_widget as dw
from decart_widget._tokens import _request_body


def test_body_is_camel_case_with_only_given_options() -> None:
    assert _request_body(60, None, None, None, None) == {"expiresIn": 60}
    body = _request_body(120, ["lucy-2.1"], ["http://localhost:8888"], 300, {"user": "u1"})
    assert body == {
        "expiresIn": 120,
        "allowedModels": ["lucy-2.1"],
        "allowedOrigins": ["http://localhost:8888"],
        "constraints": {"realtime": {"maxSessionDuration": 300}},
        "metadata": {"user": "u1"},
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": 3601}, "expires_in"),
        ({"expires_in": 1.5}, "expires_in"),
        ({"allowed_models": "lucy-2.1"}, "allowed_models must be a list"),
        ({"allowed_models": [f"m{i}" for i in range(21)]}, "at most 20"),
        ({"allowed_origins": [""]}, "allowed_origins"),
        ({"max_session_duration": 0}, "max_session_duration"),
        ({"metadata": {"x": object()}}, "JSON"),
        ({"metadata": ["a"]}, "metadata must be a dict"),
    ],
)
def test_bad_options_are_refused_before_any_request(
    kwargs: dict[str, object], message: str
) -> None:
    # An unreachable backend proves no request is attempted: validation fails first.
    minter = dw.TokenMinter(dw.Decart(api_key="dct_x", api_url="http://127.0.0.1:9"))
    with pytest.raises(dw.InvalidInput, match=message):
        minter.mint(**kwargs)  # type: ignore[arg-type]


def test_unreachable_backend_gives_a_connection_error_naming_the_url() -> None:
    minter = dw.TokenMinter(dw.Decart(api_key="dct_secretvalue", api_url="http://127.0.0.1:9"))
    with pytest.raises(dw.ConnectionLost, match=r"http://127\.0\.0\.1:9/v1/client/tokens") as info:
        minter.mint()
    assert "secretvalue" not in str(info.value)
