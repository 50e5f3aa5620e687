import pytest

import decart_widget as dw
from decart_widget._backends import DEFAULT_API_URL, DEFAULT_REALTIME_URL


def test_decart_reads_key_and_urls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECART_API_KEY", "dct_fromenv_1234")
    monkeypatch.setenv("DECART_API_URL", "https://api.example/")
    monkeypatch.setenv("DECART_REALTIME_URL", "wss://rt.example/")
    backend = dw.Decart()
    assert backend.api_key == "dct_fromenv_1234"
    assert backend.api_url == "https://api.example"
    assert backend.realtime_url == "wss://rt.example"
    assert isinstance(backend, dw.Backend)


def test_decart_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DECART_API_URL", raising=False)
    monkeypatch.delenv("DECART_REALTIME_URL", raising=False)
    backend = dw.Decart(api_key="dct_explicit_9999")
    assert (backend.api_url, backend.realtime_url) == (DEFAULT_API_URL, DEFAULT_REALTIME_URL)


def test_decart_without_a_key_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DECART_API_KEY", raising=False)
    with pytest.raises(dw.AuthenticationError, match=r"DECART_API_KEY.*Emulator"):
        dw.Decart()


def test_repr_never_shows_the_key() -> None:
    backend = dw.Decart(api_key="dct_verysecretvalue_abcd")
    assert "verysecretvalue" not in repr(backend)
    assert "abcd" in repr(backend)


def test_repr_never_shows_a_password_in_a_url() -> None:
    backend = dw.Decart(
        api_key="dct_x_abcdefgh", realtime_url="wss://me:hunter2hunter2@rt.example", api_url=None
    )
    assert "hunter2" not in repr(backend) and "me:***@rt.example" in repr(backend)
