"""A real TURN server for browser tests: Debian's ``coturn`` (``turnserver``) in a namespace.

`TurnServer` runs ``turnserver`` on one address of a `netns_kit.Netns` host (the router's
`netns_kit.TURN_IP`, which both the browser's and the kernel's hosts reach), UDP only, with no
configuration file. Its credentials are the time-limited ones of coturn's ``use-auth-secret``
(the "TURN REST API" scheme most TURN providers use): a username that carries its expiry, and
as password the HMAC-SHA1 of that username with the ``secret`` shared with the server. It is
ready once it answers a STUN Binding request from its own host. `unavailable` says why it cannot
run here.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from aioice import stun
from netns_kit import Closing, Netns, stop_process

TURNSERVER = "turnserver"
REALM = "decart-widget.test"


def unavailable() -> str | None:
    """Why a TURN server cannot run here (None: it can)."""
    if shutil.which(TURNSERVER) is None:
        return "no turnserver (Debian's coturn: apt-get install coturn; scripts/setup.sh does)"
    return None


class TurnServer(Closing):
    """``with TurnServer(host, ip) as turn:`` a TURN server at ``turn:{ip}:{port}``."""

    def __init__(self, host: Netns, ip: str, port: int = 3478) -> None:
        self.host = host
        self.ip = ip
        self.port = port
        #: the secret shared with the server; whoever holds it mints credentials
        self.secret = secrets.token_urlsafe(16)
        self._folder = Path(tempfile.mkdtemp(prefix="dw-turn-"))
        self.log_path = self._folder / "turnserver.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"turn:{self.ip}:{self.port}?transport=udp"

    def __enter__(self) -> TurnServer:
        command = [
            *self.host.exec_prefix,
            TURNSERVER,
            "-n",  # no configuration file: only these options
            "--listening-ip", self.ip,
            "--relay-ip", self.ip,
            "--listening-port", str(self.port),
            "--min-port", "49152",
            "--max-port", "49252",
            "--use-auth-secret",
            "--static-auth-secret", self.secret,
            "--realm", REALM,
            "--fingerprint",
            "--no-tls",
            "--no-dtls",
            "--no-tcp-relay",
            "--no-cli",
            "--no-stdout-log",
            "--log-file", str(self.log_path),
            "--simple-log",
            "--pidfile", str(self._folder / "turnserver.pid"),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        try:
            self._wait_ready(15.0)
        except BaseException:
            self.close()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"turnserver exited ({self._process.returncode}): {self.log()}")
            if self.host.call(_answers_binding, self.ip, self.port):
                return
            time.sleep(0.1)
        raise RuntimeError(f"turnserver did not answer within {timeout} s: {self.log()}")

    def log(self) -> str:
        """The end of the server's log (for a failure's message)."""
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def close(self) -> None:
        process, self._process = self._process, None
        stop_process(process)
        shutil.rmtree(self._folder, ignore_errors=True)


def _answers_binding(ip: str, port: int) -> bool:
    """Whether a STUN Binding request to ``ip:port`` is answered within a short wait."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.3)
        try:
            probe.sendto(bytes(request), (ip, port))
            data, _ = probe.recvfrom(2048)
        except OSError:
            return False
    try:
        answer = stun.parse_message(data)
    except ValueError:
        return False
    return answer.transaction_id == request.transaction_id
