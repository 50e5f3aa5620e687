"""An SSH tunnel for browser tests: Debian's OpenSSH server and client in namespaces.

`SshServer` runs ``sshd`` (package ``openssh-server``) on one address of a `netns_kit.Netns`
host with its own host key, config and authorized key, in the foreground, so it stops with the
test. `SshTunnel` runs ``ssh -N -L`` (package ``openssh-client``) on another host: what a user
types to reach a remote Jupyter, ``ssh -L 8888:<server>:<port> server``, whose page then opens
at ``http://localhost:8888``. `unavailable` says why it cannot run here.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from netns_kit import Closing, Netns, stop_process

SSHD = "/usr/sbin/sshd"
#: sshd refuses to start without its privilege-separation directory
PRIVSEP_DIR = Path("/run/sshd")


def unavailable() -> str | None:
    """Why an SSH tunnel cannot run here (None: it can)."""
    if not Path(SSHD).exists():
        return "no sshd (Debian's openssh-server; scripts/setup.sh installs it)"
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "no ssh client (Debian's openssh-client)"
    return None


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


class SshServer(Closing):
    """``with SshServer(host, ip, port) as server:``: sshd at ``ip:port`` on ``host``, letting
    in root with the key at ``server.client_key`` and allowing TCP forwarding."""

    def __init__(self, host: Netns, ip: str, port: int = 22) -> None:
        self.host, self.ip, self.port = host, ip, port
        self.folder = Path(tempfile.mkdtemp(prefix="dw-sshd-"))
        self.client_key = self.folder / "client_ed25519"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SshServer:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        host_key = self.folder / "host_ed25519"
        _keygen(host_key)
        _keygen(self.client_key)
        authorized = self.folder / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        config = self.folder / "sshd_config"
        config.write_text(
            f"ListenAddress {self.ip}:{self.port}\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"PidFile {self.folder / 'sshd.pid'}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "AllowTcpForwarding yes\n"
        )
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self._process = subprocess.Popen(
            [*self.host.exec_prefix, SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "sshd.log").open("wb"),
        )
        deadline = time.monotonic() + 15
        while not self.host.call(_accepts, self.ip, self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        try:
            return (self.folder / "sshd.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def close(self) -> None:
        process, self._process = self._process, None
        stop_process(process)
        shutil.rmtree(self.folder, ignore_errors=True)


class SshTunnel(Closing):
    """``ssh -N -L 127.0.0.1:{local_port}:{target}`` on ``host`` through ``server`` (reached at
    ``via``, e.g. a forwarder in front of it), until closed."""

    def __init__(
        self,
        host: Netns,
        server: SshServer,
        via: tuple[str, int],
        local_port: int,
        target: tuple[str, int],
    ) -> None:
        self.host, self.local_port = host, local_port
        self._command = [
            *host.exec_prefix, "ssh", "-N", "-i", str(server.client_key),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes",
            "-o", "LogLevel=ERROR", "-p", str(via[1]),
            "-L", f"127.0.0.1:{local_port}:{target[0]}:{target[1]}", f"root@{via[0]}",
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SshTunnel:
        self._process = subprocess.Popen(
            self._command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while not self.host.call(_accepts, "127.0.0.1", self.local_port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                error = b""
                if self._process.poll() is not None and self._process.stderr is not None:
                    error = self._process.stderr.read()
                self.close()
                raise RuntimeError(f"the SSH tunnel did not open: {error.decode(errors='replace')}")
            time.sleep(0.1)
        return self

    def close(self) -> None:
        process, self._process = self._process, None
        stop_process(process)
        if process is not None and process.stderr is not None:
            process.stderr.close()


def _accepts(ip: str, port: int) -> bool:
    """Whether a TCP connection to ``ip:port`` is accepted (from the calling thread's host)."""
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False
