"""The proxy's configuration: command-line flags, each with an environment fallback.

=========================== ================================ =====================================
flag                        environment                      default
=========================== ================================ =====================================
``--host``                  ``DECART_PROXY_HOST``            ``127.0.0.1``
``--port``                  ``DECART_PROXY_PORT``            ``8787``
``--upstream-url``          ``DECART_REALTIME_URL``          ``wss://api3.decart.ai``
``--api-key``               ``DECART_API_KEY``               (required)
``--secret``                ``DECART_PROXY_SECRET``          (required; comma-separated to rotate)
``--ledger``                ``DECART_PROXY_LEDGER``          ``decart-proxy-ledger.sqlite3``
``--allowed-origins``       ``DECART_PROXY_ALLOWED_ORIGINS`` any (comma-separated list)
``--allowed-models``        ``DECART_PROXY_ALLOWED_MODELS``  any (comma-separated list)
``--max-sessions-per-user`` ``DECART_PROXY_MAX_SESSIONS``    5 (0: no limit)
``--prompt-rate``           ``DECART_PROXY_PROMPT_RATE``     2 a second, bursts of 10 (0: none)
``--quota-seconds``         ``DECART_PROXY_QUOTA_SECONDS``   none (per user and period)
``--quota-period``          ``DECART_PROXY_QUOTA_PERIOD``    ``total`` (or ``day``, ``month``)
``--drain-seconds``         ``DECART_PROXY_DRAIN_SECONDS``   10
``--instance``              ``DECART_PROXY_INSTANCE``        hostname-pid
``--log-format``            ``DECART_PROXY_LOG_FORMAT``      ``json`` (or ``text``)
``--log-level``             ``DECART_PROXY_LOG_LEVEL``       ``info``
=========================== ================================ =====================================

Connection admission (`decart_widget._connection_guard`): ``--handshake-timeout``
(``DECART_PROXY_HANDSHAKE_TIMEOUT``, 10 s), ``--max-connections``
(``DECART_PROXY_MAX_CONNECTIONS``, default (descriptor limit - 192) / 2, 0: no cap) and
``--max-connections-per-address`` (``DECART_PROXY_MAX_CONNECTIONS_PER_ADDRESS``, 64, 0: no cap).
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .._backends import DEFAULT_REALTIME_URL
from .._connection_guard import default_max_connections, descriptor_limit
from ..protocol._urls import redact, redact_key
from ._limits import MAX_FRAME_BYTES, Limits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_LEDGER = "decart-proxy-ledger.sqlite3"
MIN_SECRET_BYTES = 16


class ConfigError(ValueError):
    """The configuration is incomplete or invalid (the message says how to fix it)."""


def default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class ProxyConfig:
    """Everything the proxy needs; see the module docstring for flags and variables."""

    upstream_url: str = DEFAULT_REALTIME_URL
    api_key: str = field(default="", repr=False)
    #: One secret, or several (the first signs new tokens; any verifies).
    secrets: tuple[str, ...] = field(default=(), repr=False)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    ledger: str = ":memory:"
    allowed_origins: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    #: Ping clients this often (seconds) and drop those that stop answering.
    heartbeat: float | None = 20.0
    upstream_connect_timeout: float = 10.0
    #: How long a close handshake may take before the socket is dropped.
    close_timeout: float = 2.0
    #: On shutdown, wait this long for sessions to end before closing them with 1001.
    drain_seconds: float = 10.0
    #: A session whose proxy stopped renewing it for this long no longer counts as live.
    lease_seconds: float = 60.0
    instance: str = field(default_factory=default_instance)
    #: Take the client address from ``X-Forwarded-For`` (only behind a trusted load balancer).
    trust_forwarded: bool = False
    #: A connection with no request in progress is closed after this many seconds (see
    #: `decart_widget._connection_guard`).
    handshake_timeout: float = 10.0
    #: Open connections at most; None: derived from the descriptor limit; 0: no cap.
    max_connections: int | None = None
    #: Connections from one client address at most (0 or None: no cap).
    max_connections_per_address: int | None = 64

    def __post_init__(self) -> None:
        if not self.upstream_url.startswith(("ws://", "wss://")):
            raise ConfigError(
                f"--upstream-url must start with ws:// or wss://, got {redact(self.upstream_url)!r}"
            )
        if not (0 <= self.port <= 65535):
            raise ConfigError(f"--port must be 0-65535, got {self.port}")
        for name in (
            "upstream_connect_timeout",
            "close_timeout",
            "lease_seconds",
            "handshake_timeout",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        if self.drain_seconds < 0:
            raise ConfigError("drain_seconds must not be negative")
        if self.heartbeat is not None and not self.heartbeat > 0:
            raise ConfigError("heartbeat must be positive (or None)")
        for name in ("max_connections", "max_connections_per_address"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must not be negative (0: no limit)")

    def connection_cap(self) -> int | None:
        """The total connection cap in force (None: none)."""
        if self.max_connections is None:
            return default_max_connections(descriptor_limit())
        return self.max_connections or None

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{item.name}={getattr(self, item.name)!r}" for item in fields(self) if item.repr
        )
        return redact(f"ProxyConfig({shown})")  # e.g. a password in the upstream URL

    def validate_for_serving(self, *, custom_auth: bool = False) -> None:
        """Refuse to serve without an upstream key, or with no or a weak secret."""
        if not self.api_key.strip():
            raise ConfigError("the proxy needs the service's key: --api-key or DECART_API_KEY")
        if not custom_auth:
            if not self.secrets:
                raise ConfigError(
                    "the proxy needs a secret to verify user tokens: --secret or "
                    "DECART_PROXY_SECRET (e.g. python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))')"
                )
            for secret in self.secrets:
                if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
                    raise ConfigError(
                        f"the proxy secret must be at least {MIN_SECRET_BYTES} bytes long"
                    )

    def describe(self) -> dict[str, Any]:
        """A loggable summary, with no secret in it."""
        return {
            "upstream_url": redact(self.upstream_url),
            "api_key": redact_key(self.api_key) if self.api_key else "",
            "secrets": len(self.secrets),
            "host": self.host,
            "port": self.port,
            "ledger": _ledger_label(self.ledger),
            "allowed_origins": list(self.allowed_origins),
            "allowed_models": list(self.allowed_models),
            "max_sessions_per_user": self.limits.max_sessions_per_user,
            "prompt_rate": self.limits.prompt_rate,
            "quota_seconds": self.limits.quota_seconds,
            "quota_period": self.limits.quota_period,
            "instance": self.instance,
            "handshake_timeout": self.handshake_timeout,
            "max_connections": self.connection_cap(),
            "max_connections_per_address": self.max_connections_per_address or None,
            "fd_limit": descriptor_limit(),
            "trust_forwarded": self.trust_forwarded,
        }


def _ledger_label(ledger: str) -> str:
    if ledger.startswith(("postgresql://", "postgres://")):
        from ._ledger_postgres import safe_dsn

        return safe_dsn(ledger)
    return ledger


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the proxy's flags to a parser (the ``decart-widget proxy`` subcommand uses this).

    Defaults are left as None so that `from_namespace` can fall back on the environment.
    """
    add = parser.add_argument
    add("--host", help=f"interface to listen on (DECART_PROXY_HOST, default {DEFAULT_HOST})")
    add("--port", type=int, help=f"port (DECART_PROXY_PORT, default {DEFAULT_PORT}; 0: any)")
    add("--upstream-url", help="realtime service base URL (DECART_REALTIME_URL)")
    add("--api-key", help="the service's permanent key (DECART_API_KEY); prefer the variable")
    add(
        "--secret",
        help="HMAC secret for user tokens (DECART_PROXY_SECRET); comma-separated "
        "to rotate: the first signs, any verifies",
    )
    add(
        "--ledger",
        help="usage ledger: a SQLite path or a postgresql:// DSN "
        f"(DECART_PROXY_LEDGER, default {DEFAULT_LEDGER})",
    )
    add("--allowed-origins", help="comma-separated browser origins allowed (default: any)")
    add("--allowed-models", help="comma-separated model names allowed (default: any)")
    add("--max-sessions-per-user", type=int, help="concurrent sessions per user (0: no limit)")
    add("--prompt-rate", type=float, help="prompts a second per session (0: no limit)")
    add("--prompt-burst", type=int, help="prompt burst size per session (default 10)")
    add("--quota-seconds", type=float, help="generation seconds per user and period")
    add("--quota-period", choices=("total", "day", "month"), help="quota period")
    add("--max-frame-bytes", type=int, help=f"largest frame (default {MAX_FRAME_BYTES})")
    add("--heartbeat", type=float, help="ping clients every N seconds (0: never; default 20)")
    add("--drain-seconds", type=float, help="on shutdown, wait this long for sessions (default 10)")
    add("--lease-seconds", type=float, help="session lease in the ledger (default 60)")
    add("--instance", help="this instance's name in the ledger (default hostname-pid)")
    add(
        "--trust-forwarded",
        action="store_true",
        default=None,
        help="log the client address from X-Forwarded-For (behind a trusted load balancer)",
    )
    add(
        "--handshake-timeout",
        type=float,
        help="close a connection with no request in progress after N s (default 10)",
    )
    add(
        "--max-connections",
        type=int,
        help="open connections at most (default: (descriptor limit - 192) / 2; 0: no cap)",
    )
    add(
        "--max-connections-per-address",
        type=int,
        help="connections from one client address at most (default 64; 0: no cap); with "
        "--trust-forwarded, per forwarded address",
    )
    add("--log-format", choices=("json", "text"), help="log format (default json)")
    add("--log-level", help="log level (default info)")
    return parser


def _pick(value: Any, env: Mapping[str, str], name: str) -> Any:
    if value is not None:
        return value
    raw = env.get(name)
    return raw if raw not in (None, "") else None


def _number(value: Any, kind: type[int] | type[float], label: str) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{label} must be a number, got {value!r}") from None


def from_namespace(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ProxyConfig:
    """Build the configuration from parsed flags, falling back on the environment."""
    env = os.environ if environ is None else environ

    def get(attr: str) -> Any:
        return getattr(args, attr, None)

    max_sessions = _number(
        _pick(get("max_sessions_per_user"), env, "DECART_PROXY_MAX_SESSIONS"),
        int,
        "--max-sessions-per-user",
    )
    prompt_rate = _number(
        _pick(get("prompt_rate"), env, "DECART_PROXY_PROMPT_RATE"), float, "--prompt-rate"
    )
    quota = _number(
        _pick(get("quota_seconds"), env, "DECART_PROXY_QUOTA_SECONDS"), float, "--quota-seconds"
    )
    defaults = Limits()
    try:
        limits = Limits(
            max_frame_bytes=_number(get("max_frame_bytes"), int, "--max-frame-bytes")
            or defaults.max_frame_bytes,
            prompt_rate=defaults.prompt_rate if prompt_rate is None else (prompt_rate or None),
            prompt_burst=_number(get("prompt_burst"), int, "--prompt-burst")
            or defaults.prompt_burst,
            max_sessions_per_user=(
                defaults.max_sessions_per_user if max_sessions is None else (max_sessions or None)
            ),
            quota_seconds=quota,
            quota_period=_pick(get("quota_period"), env, "DECART_PROXY_QUOTA_PERIOD") or "total",
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    heartbeat = _number(get("heartbeat"), float, "--heartbeat")
    drain = _number(
        _pick(get("drain_seconds"), env, "DECART_PROXY_DRAIN_SECONDS"), float, "--drain-seconds"
    )
    lease = _number(get("lease_seconds"), float, "--lease-seconds")
    port = _number(_pick(get("port"), env, "DECART_PROXY_PORT"), int, "--port")
    handshake = _number(
        _pick(get("handshake_timeout"), env, "DECART_PROXY_HANDSHAKE_TIMEOUT"),
        float,
        "--handshake-timeout",
    )
    max_connections = _number(
        _pick(get("max_connections"), env, "DECART_PROXY_MAX_CONNECTIONS"),
        int,
        "--max-connections",
    )
    per_address = _number(
        _pick(get("max_connections_per_address"), env, "DECART_PROXY_MAX_CONNECTIONS_PER_ADDRESS"),
        int,
        "--max-connections-per-address",
    )
    secret_text = _pick(get("secret"), env, "DECART_PROXY_SECRET")
    return ProxyConfig(
        upstream_url=(
            _pick(get("upstream_url"), env, "DECART_REALTIME_URL") or DEFAULT_REALTIME_URL
        ).rstrip("/"),
        api_key=(_pick(get("api_key"), env, "DECART_API_KEY") or "").strip(),
        secrets=_split(secret_text),
        host=_pick(get("host"), env, "DECART_PROXY_HOST") or DEFAULT_HOST,
        port=DEFAULT_PORT if port is None else port,
        ledger=_pick(get("ledger"), env, "DECART_PROXY_LEDGER") or DEFAULT_LEDGER,
        allowed_origins=_split(_pick(get("allowed_origins"), env, "DECART_PROXY_ALLOWED_ORIGINS")),
        allowed_models=_split(_pick(get("allowed_models"), env, "DECART_PROXY_ALLOWED_MODELS")),
        limits=limits,
        heartbeat=20.0 if heartbeat is None else (heartbeat or None),
        drain_seconds=10.0 if drain is None else drain,
        lease_seconds=lease or 60.0,
        instance=_pick(get("instance"), env, "DECART_PROXY_INSTANCE") or default_instance(),
        trust_forwarded=bool(get("trust_forwarded")),
        handshake_timeout=10.0 if handshake is None else handshake,
        max_connections=max_connections,
        max_connections_per_address=64 if per_address is None else per_address,
    )


def parse_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[ProxyConfig, argparse.Namespace]:
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="decart-widget proxy",
            description="WebSocket signaling proxy for Decart's realtime service.",
        )
    )
    args = parser.parse_args(argv)
    return from_namespace(args, environ), args


def log_settings(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """The log format and level from flags or ``DECART_PROXY_LOG_FORMAT``/``_LOG_LEVEL``."""
    env = os.environ if environ is None else environ
    fmt = _pick(getattr(args, "log_format", None), env, "DECART_PROXY_LOG_FORMAT") or "json"
    level = _pick(getattr(args, "log_level", None), env, "DECART_PROXY_LOG_LEVEL") or "info"
    if fmt not in ("json", "text"):
        raise ConfigError(f"log format must be json or text, got {fmt!r}")
    return fmt, str(level).upper()
