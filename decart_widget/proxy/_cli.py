"""``decart-widget proxy``: serve the signaling proxy from the command line.

The lead CLI either calls `main(argv)` with the arguments after ``proxy``, or adds the flags to
its own subparser with `add_arguments` and calls `run_cli(args)` with the parsed namespace.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .._connection_guard import raise_descriptor_limit
from ._config import ConfigError, add_arguments, from_namespace, log_settings
from ._logs import configure_logging
from ._server import ProxyServer, serve

__all__ = ["add_arguments", "main", "run_cli"]


def run_cli(args: argparse.Namespace) -> int:
    """Serve with parsed flags (environment fallbacks applied); returns an exit status."""
    try:
        config = from_namespace(args)
        log_format, level = log_settings(args)
        config.validate_for_serving()
    except ConfigError as exc:
        print(f"decart-widget proxy: {exc}", file=sys.stderr)
        return 2
    configure_logging(level, json_format=log_format == "json", process=True)
    raise_descriptor_limit()  # to the hard limit: each session holds two descriptors

    def ready(server: ProxyServer) -> None:
        print(f"Proxy listening on {server.realtime_url}/v1/stream", flush=True)
        print(f"Health: {server.http_url}/healthz  Metrics: {server.http_url}/metrics", flush=True)

    try:
        serve(config, ready=ready)
    except OSError as exc:  # e.g. the port is taken
        logging.getLogger("decart_widget.proxy").error("cannot serve: %s", exc)
        print(f"decart-widget proxy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover - signals are handled by serve()
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``decart-widget proxy [flags]``; ``argv`` excludes the program and subcommand names."""
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="decart-widget proxy",
            description="WebSocket signaling proxy for Decart's realtime service: clients "
            "connect with ?model=...&token=... and never see the service's key.",
        )
    )
    return run_cli(parser.parse_args(argv))
