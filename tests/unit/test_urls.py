from urllib.parse import parse_qs, urlsplit

import pytest

from decart_widget.protocol._errors import InvalidInput
from decart_widget.protocol._urls import (
    RESOLUTIONS,
    build_stream_url,
    check_resolution,
    redact,
    redact_key,
)


def test_stream_url_encodes_every_parameter() -> None:
    url = build_stream_url("wss://api3.decart.ai/", "ek_abc&x=1", "my model/v2", resolution="720p")
    parts = urlsplit(url)
    assert parts.path == "/v1/stream"
    query = parse_qs(parts.query)
    assert query == {"api_key": ["ek_abc&x=1"], "model": ["my model/v2"], "resolution": ["720p"]}


def test_stream_url_keeps_a_base_path() -> None:
    url = build_stream_url("ws://127.0.0.1:9000/prefix", "k", "lucy-2.1")
    assert urlsplit(url).path == "/prefix/v1/stream"


def test_stream_url_rejects_http_scheme_without_leaking_the_key() -> None:
    with pytest.raises(ValueError, match="ws://") as info:
        build_stream_url("https://api.decart.ai?api_key=dct_secretsecret", "k", "m")
    assert "secretsecret" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "wss://x/v1/stream?api_key=dct_live_123456&model=lucy",
        "ws://x/v1/stream?model=lucy&token=abcdef123",
        "failed: key ek_0123456789abcdef was refused",
    ],
)
def test_redact_removes_credentials(text: str) -> None:
    out = redact(text)
    for secret in ("dct_live_123456", "abcdef123", "ek_0123456789abcdef"):
        assert secret not in out
    assert "***" in out


def test_redact_keeps_the_rest() -> None:
    assert redact("ws://x/v1/stream?api_key=s3cr3t&model=lucy-2.1") == (
        "ws://x/v1/stream?api_key=***&model=lucy-2.1"
    )


def test_redact_hides_the_password_of_a_url_and_keeps_its_user_and_host() -> None:
    assert redact("proxy ready upstream=ws://platform:pA55@10.0.0.1:9/x ok") == (
        "proxy ready upstream=ws://platform:***@10.0.0.1:9/x ok"
    )
    assert redact("postgresql://me:pw@db/ledger") == "postgresql://me:***@db/ledger"
    for untouched in ("ws://host:8080/v1/stream", "wss://user@host/x", "at 12:30@home"):
        assert redact(untouched) == untouched


def test_redact_hides_header_credentials_quoted_by_a_parser_error() -> None:
    quoted = "bad: b'Authorization: Bearer s3cr3t-v4lue\\x00' and b'Cookie: a=1; sid=xyz'"
    out = redact(quoted)
    assert "s3cr3t" not in out and "sid=xyz" not in out
    assert "Bearer ***" in out and "Cookie: ***" in out
    assert redact("Basic dXNlcjpwYXNz") == "Basic ***"
    assert redact("Bearer of news, a bearer bond") == "Bearer of news, a bearer bond"


def test_redact_key_shows_only_prefix_and_tail() -> None:
    assert redact_key("dct_abcdefghijklmnop") == "dct_***mnop"
    assert redact_key("short") == "***"


@pytest.mark.parametrize(
    "text",
    [
        "GET /v1/stream?model=x&TOKEN=abc123 HTTP/1.1",
        "wss://user:pa55@host/v1/stream?api_key=dct_abcdef",
        "Authorization: Bearer abcdefgh12345678\r\nCookie: sid=1; theme=dark",
        "set-cookie: a=b",
        "key ek_12345678 and dwp1.payload.sig in prose",
        "plain prompt text with no credential, a_b and x:y",
        "px_0123 user42 lucy-2.1",
    ],
)
def test_redact_skipping_patterns_changes_nothing(text: str) -> None:
    # redact skips a pattern when its literal is absent; applying all of them must agree
    from decart_widget.protocol import _urls as urls

    full = urls._URL_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", text)
    full = urls._AUTH_SCHEME.sub(lambda m: f"{m.group('scheme')} ***", full)
    full = urls._COOKIE_HEADER.sub(lambda m: f"{m.group('name')}: ***", full)
    full = urls._SECRET_QUERY.sub(lambda m: f"{m.group('name')}=***", full)
    full = urls._SECRET_WORD.sub("***", full)
    assert redact(text) == full


def test_the_clients_resolution_is_checked_before_any_url_is_built() -> None:
    assert [check_resolution(r) for r in ("720p", "1080p", None)] == ["720p", "1080p", None]
    for bad in ("4k", "720", 720, ""):
        with pytest.raises(InvalidInput, match=r"'720p' or '1080p'"):
            check_resolution(bad)
    assert RESOLUTIONS == ("720p", "1080p")
