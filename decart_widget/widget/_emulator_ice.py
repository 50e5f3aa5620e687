"""The widget's ICE servers for an emulator's own peers, when the emulator runs in the kernel.

A widget hands its ``ice_servers`` to its page as a traitlet. Its service may be an emulator in
the kernel's process (the automatic one, or a `dw.Emulator` started in the notebook): then the
emulator's peers get the same list, the one the page has, so that both ends of the media can use
a TURN server (docs/where-it-works.md). The list is bound to the client token of the session
(`Emulator.bind_ice_servers`), so it never leaves the process and goes with that session only:

* direct signaling: the token the kernel mints for the page (`bind_to_token`);
* kernel signaling: the relay connects with a token minted for the connection instead of the
  emulator's permanent key, which every widget of the kernel shares (`relay_key`).

A widget given no ``ice_servers`` binds nothing: the emulator's own ``ice_servers=`` apply.
"""

from __future__ import annotations

from typing import Any

from .._backends import Backend, is_emulator
from .._tokens import TokenMinter

#: the lifetime of a relay's token: it only has to open the connection
RELAY_TOKEN_SECONDS = 60


def bind_to_token(backend: Backend, token: str, servers: list[dict[str, Any]] | None) -> None:
    """Give the sessions of client ``token`` the widget's ``servers`` on an in-process
    emulator (nothing for another service, or a widget given no servers)."""
    if servers is None or not is_emulator(backend):
        return
    backend.bind_ice_servers(token, servers)  # type: ignore[attr-defined]


async def relay_key(backend: Backend, model: str, servers: list[dict[str, Any]] | None) -> str:
    """The key the kernel relay opens the service with: the permanent key, or, for an
    in-process emulator and a widget with ICE servers, a client token bound to them."""
    if servers is None or not is_emulator(backend):
        return backend.api_key
    token = await TokenMinter(backend).amint(
        expires_in=RELAY_TOKEN_SECONDS, allowed_models=[model], reuse=False
    )
    bind_to_token(backend, token.api_key, servers)
    return token.api_key


__all__ = ["bind_to_token", "relay_key"]
