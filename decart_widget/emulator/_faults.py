"""Fault injection: the emulator misbehaving on purpose, for reliability tests.

Set the attributes of `Emulator.faults` at any time (from any thread). Each fault is read when it
matters: ``ack_delay``, ``drop_acks`` and ``refuse_offers`` at every ack or offer;
``drop_socket_after`` when a session's socket opens (each later session is dropped that many
seconds after its socket opened, so set it back to None to let reconnects succeed).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Faults:
    #: Abort the TCP connection (no close frame: the client sees 1006) this many seconds after a
    #: session's socket opened. None: never.
    drop_socket_after: float | None = None
    #: Hold every prompt_ack / set_image_ack back this many seconds (acks keep their order).
    ack_delay: float = 0.0
    #: Apply prompts and images but never acknowledge them.
    drop_acks: bool = False
    #: Answer every offer with an ``error`` message and close the socket (1011).
    refuse_offers: bool = False

    def reset(self) -> None:
        """Back to a well-behaved service."""
        self.drop_socket_after = None
        self.ack_delay = 0.0
        self.drop_acks = False
        self.refuse_offers = False
