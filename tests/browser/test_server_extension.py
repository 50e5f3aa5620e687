"""The Jupyter server extension: kernel WebSockets without Nagle's delay, and the front-end
assets served by hash.

No browser: a real JupyterLab server, HTTP requests to it, a kernel started through its REST API
and a WebSocket client. The Nagle check reads the option on the server's own end of that socket:
a copy of the server process's file descriptor (``pidfd_getfd``, Linux 5.6+, same user) and
``getsockopt``.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from jupyter_servers import JupyterServer
from websockets.sync.client import connect

from decart_widget.server_extension import without_nagle
from decart_widget.widget._assets import ASSETS
from decart_widget.widget._widget import STATIC

SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture (new syscalls share one table)


def server_socket_no_delay(pid: int, server_port: int, client_port: int) -> bool:
    """TCP_NODELAY on the server process's end of the connection from ``client_port``."""
    inode = _socket_inode(pid, server_port, client_port)
    for fd_link in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd_link) != f"socket:[{inode}]":
                continue
        except OSError:
            continue
        pidfd = os.pidfd_open(pid)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            copied = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd_link.name), 0)
            if copied < 0:
                raise OSError(ctypes.get_errno(), "pidfd_getfd failed")
        finally:
            os.close(pidfd)
        with socket.socket(fileno=copied) as sock:
            return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    raise AssertionError(f"no descriptor of process {pid} holds socket inode {inode}")


def _socket_inode(pid: int, server_port: int, client_port: int) -> str:
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return inode
    raise AssertionError(f"no connection from port {client_port} in process {pid}")


def kernel_socket_no_delay(server: JupyterServer) -> bool:
    request = urllib.request.Request(
        f"{server.base_url}/api/kernels?token={server.token}", data=b"{}", method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        kernel = json.load(response)
    url = (
        f"ws://127.0.0.1:{server.port}/api/kernels/{kernel['id']}/channels"
        f"?session_id=test&token={server.token}"
    )
    with connect(url, subprotocols=["v1.kernel.websocket.jupyter.org"], open_timeout=30) as ws:
        # the server answers a kernel_info_request only after its connect() ran
        ws.send(_kernel_info_request())
        while b"kernel_info_reply" not in _as_bytes(ws.recv(timeout=30)):
            pass
        client_port = ws.socket.getsockname()[1]
        return server_socket_no_delay(server.pid, server.port, client_port)


def _kernel_info_request() -> bytes:
    """One message in the ``v1.kernel.websocket.jupyter.org`` framing."""
    header = {
        "msg_id": "probe",
        "msg_type": "kernel_info_request",
        "session": "test",
        "username": "test",
        "version": "5.3",
        "date": "2026-01-01T00:00:00Z",
    }
    channel = b"shell"
    parts = [json.dumps(part).encode() for part in (header, {}, {}, {})]
    offsets = [8 * (2 + len(parts) + 1)]
    for chunk in (channel, *parts):
        offsets.append(offsets[-1] + len(chunk))
    head = len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return head + channel + b"".join(parts)


def _as_bytes(message: str | bytes) -> bytes:
    return message.encode() if isinstance(message, str) else message


pytestmark = pytest.mark.skipif(
    not hasattr(os, "pidfd_open"), reason="needs Linux pidfd (read a socket option of the server)"
)


def test_the_extension_sets_tcp_nodelay_on_kernel_websockets() -> None:
    with JupyterServer("lab") as server:
        assert "kernel WebSockets send without Nagle" in server.log()
        assert kernel_socket_no_delay(server) is True


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET that follows no redirect."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _built(name: str) -> tuple[bytes, str]:
    path = STATIC / ASSETS[name]
    if not path.is_file():
        pytest.skip(f"{path} is not built (bash scripts/setup.sh)")
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


def test_the_extension_serves_each_asset_by_its_build_id_cached_as_immutable() -> None:
    with JupyterServer("lab") as server:
        assert "front-end assets served at /decart-widget/assets/" in server.log()
        for name in ASSETS:
            data, build_id = _built(name)
            url = (
                f"{server.base_url}/decart-widget/assets/{build_id}/{name}.js?token={server.token}"
            )
            status, headers, body = _get(url)
            assert status == 200, name
            assert body == data
            assert headers["Content-Type"].startswith("text/javascript")
            assert "immutable" in headers["Cache-Control"]
            assert "max-age=31536000" in headers["Cache-Control"]


def test_the_extension_serves_nothing_else() -> None:
    data, build_id = _built("livekit")
    other_id = hashlib.sha256(data + b"another build").hexdigest()[:16]
    with JupyterServer("lab") as server:
        base = f"{server.base_url}/decart-widget/assets"
        token = f"?token={server.token}"
        for path in (
            f"{other_id}/livekit.js",  # another build's id: the page falls back to the comm
            f"{build_id}/webrtc.js",  # one asset's id does not open another
            f"{build_id}/widget.js",  # a static file that is not an on-demand asset
            f"{build_id}/..%2f_widget.py",
            f"{build_id}/../static/livekit.js",
            f"{build_id[:8]}/livekit.js",
        ):
            assert _get(f"{base}/{path}{token}")[0] == 404, path
        # behind the server's login, as every page of it
        status, _, body = _get(f"{base}/{build_id}/livekit.js")
        assert status in (302, 403) and body != data


def test_without_the_extension_jupyter_leaves_nagle_on() -> None:
    """The control: what the server does by itself, so the check above can tell the difference."""
    disabled = "--ServerApp.jpserver_extensions=decart_widget=False"
    with JupyterServer("lab", args=[disabled]) as server:
        assert "kernel WebSockets send without Nagle" not in server.log()
        assert kernel_socket_no_delay(server) is False
        _, build_id = _built("livekit")
        url = f"{server.base_url}/decart-widget/assets/{build_id}/livekit.js?token={server.token}"
        assert _get(url)[0] == 404  # no route: the page gets its assets over the comm


class _Handler:
    def __init__(self) -> None:
        self.no_delay: list[bool] = []

    def set_nodelay(self, value: bool) -> None:
        self.no_delay.append(value)


class _Connection:
    def __init__(self, handler: Any) -> None:
        self.websocket_handler = handler
        self.connected = 0

    def connect(self) -> str:
        self.connected += 1
        return "connected"


def test_the_wrapper_keeps_the_servers_class_and_its_result() -> None:
    wrapped = without_nagle(_Connection)
    handler = _Handler()
    connection = wrapped(handler)
    assert isinstance(connection, _Connection)
    assert connection.connect() == "connected"
    assert handler.no_delay == [True]
    assert connection.connected == 1
    assert wrapped.__name__ == "NoDelay_Connection"
    assert without_nagle(wrapped) is wrapped  # loading twice does not wrap twice


def test_a_handler_that_refuses_still_connects() -> None:
    class Closed(_Handler):
        def set_nodelay(self, value: bool) -> None:
            raise AssertionError("stream closed")

    connection = without_nagle(_Connection)(Closed())
    assert connection.connect() == "connected"
