"""Flags with environment fallbacks (no sockets)."""

from __future__ import annotations

import argparse

import pytest

from decart_widget.proxy._config import (
    DEFAULT_LEDGER,
    ConfigError,
    ProxyConfig,
    add_arguments,
    from_namespace,
    log_settings,
)

SECRET = "0123456789abcdef0123"


def parse(argv: list[str], env: dict[str, str] | None = None) -> ProxyConfig:
    args = add_arguments(argparse.ArgumentParser()).parse_args(argv)
    return from_namespace(args, env or {})


def test_defaults() -> None:
    config = parse([])
    assert config.host == "127.0.0.1"
    assert config.port == 8787
    assert config.upstream_url == "wss://api3.decart.ai"
    assert config.ledger == DEFAULT_LEDGER
    assert config.limits.max_sessions_per_user == 5
    assert config.limits.prompt_rate == 2.0
    with pytest.raises(ConfigError, match="DECART_API_KEY"):
        config.validate_for_serving()


def test_the_environment_fills_in_missing_flags() -> None:
    env = {
        "DECART_API_KEY": "dct_from_env_1234",
        "DECART_REALTIME_URL": "ws://127.0.0.1:9/",
        "DECART_PROXY_SECRET": f"{SECRET},old-secret-xxxxxxxxxx",
        "DECART_PROXY_LEDGER": "postgresql://u@db/ledger",
        "DECART_PROXY_PORT": "9000",
        "DECART_PROXY_HOST": "0.0.0.0",
        "DECART_PROXY_MAX_SESSIONS": "0",
        "DECART_PROXY_PROMPT_RATE": "0",
        "DECART_PROXY_QUOTA_SECONDS": "3600",
        "DECART_PROXY_QUOTA_PERIOD": "month",
        "DECART_PROXY_ALLOWED_ORIGINS": "https://a.example, https://b.example",
    }
    config = parse([], env)
    assert config.api_key == "dct_from_env_1234"
    assert config.upstream_url == "ws://127.0.0.1:9"
    assert config.secrets == (SECRET, "old-secret-xxxxxxxxxx")
    assert config.ledger == "postgresql://u@db/ledger"
    assert (config.host, config.port) == ("0.0.0.0", 9000)
    assert config.limits.max_sessions_per_user is None
    assert config.limits.prompt_rate is None
    assert config.limits.quota_seconds == 3600
    assert config.limits.quota_period == "month"
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    config.validate_for_serving()


def test_flags_win_over_the_environment() -> None:
    config = parse(
        ["--api-key", "dct_flag", "--port", "0", "--secret", SECRET, "--ledger", "/tmp/x.db"],
        {"DECART_API_KEY": "dct_env", "DECART_PROXY_PORT": "9000"},
    )
    assert config.api_key == "dct_flag"
    assert config.port == 0
    assert config.ledger == "/tmp/x.db"


def test_secrets_are_checked_and_never_described() -> None:
    config = parse(["--api-key", "dct_secretkey_1234", "--secret", "short"])
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        config.validate_for_serving()
    config = parse(["--api-key", "dct_secretkey_1234"])
    with pytest.raises(ConfigError, match="DECART_PROXY_SECRET"):
        config.validate_for_serving()
    config.validate_for_serving(custom_auth=True)
    described = str(
        parse(
            [
                "--api-key",
                "dct_secretkey_1234",
                "--secret",
                SECRET,
                "--ledger",
                "postgresql://bob:hunter2@db/x",
            ]
        ).describe()
    )
    assert "secretkey" not in described and SECRET not in described and "hunter2" not in described
    assert "secretkey" not in repr(config)


@pytest.mark.parametrize(
    "argv",
    [["--upstream-url", "https://x"], ["--port", "70000"], ["--prompt-rate", "-1"]],
)
def test_invalid_settings_are_refused(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse(argv)


def test_numbers_from_the_environment_are_checked() -> None:
    with pytest.raises(ConfigError, match="number"):
        parse([], {"DECART_PROXY_PORT": "eighty"})


def test_log_settings() -> None:
    args = add_arguments(argparse.ArgumentParser()).parse_args(["--log-format", "text"])
    assert log_settings(args, {}) == ("text", "INFO")
    args = add_arguments(argparse.ArgumentParser()).parse_args([])
    assert log_settings(args, {"DECART_PROXY_LOG_LEVEL": "debug"}) == ("json", "DEBUG")


def test_proxy_server_takes_the_upstream_from_a_backend_and_makes_a_secret() -> None:
    from decart_widget._backends import Decart
    from decart_widget.proxy import ProxyServer, verify_token

    upstream = Decart(api_key="dct_backend_key_1234", realtime_url="ws://127.0.0.1:1")
    server = ProxyServer(upstream=upstream, drain_seconds=0)
    config = server.config
    assert (config.upstream_url, config.api_key) == ("ws://127.0.0.1:1", "dct_backend_key_1234")
    assert (config.host, config.port, config.ledger) == ("127.0.0.1", 0, ":memory:")
    assert config.drain_seconds == 0
    assert len(config.secrets) == 1 and len(config.secrets[0]) >= 32
    assert verify_token(server.issue_token("amy"), config.secrets).user == "amy"
    assert "dct_backend" not in repr(server)

    base = ProxyConfig(host="0.0.0.0", port=9000, api_key="dct_x", secrets=(SECRET,))
    kept = ProxyServer(config=base)
    assert (kept.config.host, kept.config.port, kept.config.secrets) == ("0.0.0.0", 9000, (SECRET,))
    assert ProxyServer(config=base, port=0).config.port == 0


def test_proxy_server_with_a_custom_hook_has_no_secret() -> None:
    from decart_widget.proxy import ProxyServer

    server = ProxyServer(api_key="dct_x", authenticate=lambda request: "someone")
    assert server.config.secrets == ()
    with pytest.raises(RuntimeError, match="custom authenticate hook"):
        server.issue_token("amy")
