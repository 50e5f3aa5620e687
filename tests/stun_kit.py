"""A STUN server on loopback that records who asked: proof that a WebRTC stack was given the ICE
servers a test passed (it sends a Binding request to each STUN server while gathering).

Real STUN (RFC 5389, aioice's codec): Binding requests get a success response with the sender's
XOR-MAPPED-ADDRESS, so a client sees a working server, not a timeout.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from aioice import stun


class StunServer:
    """``with StunServer() as server:`` ``server.url`` is ``stun:127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port: int = self._socket.getsockname()[1]
        self._lock = threading.Lock()
        self._requests: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stun-server", daemon=True)

    @property
    def url(self) -> str:
        return f"stun:127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[tuple[str, int]]:
        """The source address of every Binding request so far."""
        with self._lock:
            return list(self._requests)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, address = self._socket.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                request = stun.parse_message(data)
            except ValueError:
                continue
            if (request.message_method, request.message_class) != (
                stun.Method.BINDING,
                stun.Class.REQUEST,
            ):
                continue
            with self._lock:
                self._requests.append(address)
            response = stun.Message(
                message_method=stun.Method.BINDING,
                message_class=stun.Class.RESPONSE,
                transaction_id=request.transaction_id,
            )
            response.attributes["XOR-MAPPED-ADDRESS"] = address
            self._socket.sendto(bytes(response), address)

    def __enter__(self) -> StunServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(2)
        self._socket.close()
