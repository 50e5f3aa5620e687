"""The `decart-widget` command: `emulator`, `proxy` and `lab`."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ._ice import ice_server_from_url
from ._logging import SafeTextFormatter, install_process_handler

log = logging.getLogger("decart_widget.cli")

DEFAULT_NOTEBOOK = "00-quickstart.ipynb"


def _notebooks_dir() -> Path:
    """The tutorial notebooks: next to the package in a checkout."""
    return Path(__file__).resolve().parent.parent / "notebooks"


def _cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import serve_forever

    serve_forever(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        max_concurrent_sessions=args.max_sessions,
        credits_seconds=args.credits,
        room_capacity=args.room_capacity,
        ice_servers=[ice_server_from_url(url) for url in args.ice_server],
    )
    return 0


def _cmd_proxy(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .proxy._cli import main as proxy_main

    return proxy_main(list(rest))


def _cmd_lab(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .emulator import Emulator

    notebooks = Path(args.notebooks) if args.notebooks else _notebooks_dir()
    if not notebooks.is_dir():
        sys.stderr.write(f"decart-widget lab: no notebooks folder at {notebooks}\n")
        return 2
    with Emulator(host="127.0.0.1", port=args.emulator_port) as emulator:
        env = dict(os.environ)
        # Kernels started by this JupyterLab talk to this emulator as if it were Decart.
        env["DECART_API_KEY"] = emulator.api_key
        env["DECART_API_URL"] = emulator.api_url
        env["DECART_REALTIME_URL"] = emulator.realtime_url
        print(f"emulator: {emulator.api_url} (realtime {emulator.realtime_url})", flush=True)
        command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={notebooks}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        start = notebooks / args.notebook
        if start.exists():
            command.append(f"--LabApp.default_url=/lab/tree/{args.notebook}")
        command.extend(rest)
        try:
            return subprocess.call(command, env=env)
        except KeyboardInterrupt:
            return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decart-widget", description="Realtime AI video in Jupyter: local tools."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    commands = parser.add_subparsers(dest="command", required=True)

    emulator = commands.add_parser("emulator", help="serve the local Decart-compatible service")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8765)
    emulator.add_argument("--api-key", default=None, help="the permanent key it accepts")
    emulator.add_argument(
        "--max-sessions", type=int, default=4, help="concurrent sessions per key (then 1013)"
    )
    emulator.add_argument(
        "--credits",
        type=float,
        default=None,
        help="generation seconds per key (default: no limit)",
    )
    emulator.add_argument(
        "--room-capacity",
        type=int,
        default=None,
        metavar="N",
        help="Gen-B sessions in rooms at once; later ones queue and get queue_position "
        "(0: every session waits; default: no queue)",
    )
    emulator.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="a STUN/TURN server for the emulator's peers (repeatable); TURN credentials go in "
        "the URL: turn:user:password@host:3478",
    )

    commands.add_parser(
        "proxy",
        help="serve the WebSocket signaling proxy (see `decart-widget proxy --help`)",
        add_help=False,
    )

    lab = commands.add_parser("lab", help="start the emulator and JupyterLab on the tutorials")
    lab.add_argument("--notebooks", default=None, help="folder of notebooks to open")
    lab.add_argument("--notebook", default=DEFAULT_NOTEBOOK, help="notebook to open first")
    lab.add_argument("--emulator-port", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `proxy` and `lab` pass unknown arguments on (to the proxy's parser, to JupyterLab).
    args, rest = parser.parse_known_args(argv)
    # Every record of the process (aiohttp's and asyncio's too) scrubbed, one line each.
    handler = logging.StreamHandler()
    handler.setFormatter(SafeTextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    install_process_handler(handler, logging.DEBUG if args.verbose else logging.INFO)
    if args.command == "emulator":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _cmd_emulator(args)
    if args.command == "proxy":
        return _cmd_proxy(args, argv[argv.index("proxy") + 1 :])
    return _cmd_lab(args, rest)


if __name__ == "__main__":
    raise SystemExit(main())
