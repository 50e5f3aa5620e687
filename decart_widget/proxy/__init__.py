"""The WebSocket signaling proxy for platforms (``decart-widget proxy``, docs/protocol.md, beaten).

A platform runs it between its users and Decart's realtime service: clients connect to
``wss://platform.example/v1/stream?model=...&token=...`` with a user token the platform issued
(`issue_token`), the proxy opens the upstream connection with the platform's key and relays the
signaling frames unchanged; media flows directly between the browser and the service. It
authenticates, limits, meters every generation second into a durable ledger (SQLite or
PostgreSQL) and exposes ``/healthz`` and ``/metrics``.

One module per job: `app` (routes, admission), `relay` (one client <-> upstream pair), `auth`
(tokens, the ``authenticate`` hook), `ledger` + `ledger_sqlite` + `ledger_postgres` (usage),
`limits`, `codes` (close codes), `metrics`, `logs`, `config` (flags, environment), `server`
(`ProxyServer`, `serve`), `cli`.
"""

from __future__ import annotations

from . import codes
from ._app import ProxyService
from ._auth import (
    Authenticator,
    HmacAuthenticator,
    InvalidToken,
    TokenClaims,
    Unauthorized,
    issue_token,
    token_from_request,
    verify_token,
)
from ._config import ConfigError, ProxyConfig
from ._ledger import Ledger, LedgerError, LedgerSession, open_ledger
from ._ledger_sqlite import SQLiteLedger
from ._limits import Limits
from ._logs import JsonFormatter, configure_logging
from ._metrics import Metrics
from ._server import ProxyBackend, ProxyServer, serve, serve_async

__all__ = [
    "Authenticator",
    "ConfigError",
    "HmacAuthenticator",
    "InvalidToken",
    "JsonFormatter",
    "Ledger",
    "LedgerError",
    "LedgerSession",
    "Limits",
    "Metrics",
    "ProxyBackend",
    "ProxyConfig",
    "ProxyServer",
    "ProxyService",
    "SQLiteLedger",
    "TokenClaims",
    "Unauthorized",
    "codes",
    "configure_logging",
    "issue_token",
    "open_ledger",
    "serve",
    "serve_async",
    "token_from_request",
    "verify_token",
]
