"""A Jupyter server extension: kernel messages without Nagle's delay, and the front-end assets.

Jupyter server leaves Nagle's algorithm on for the WebSocket between the page and a kernel
(tornado turns it back on after the upgrade response). With it on, a small frame written while the
previous one is not yet acknowledged waits for that acknowledgement, and the browser delays its
acknowledgements by up to 40 ms. Every comm reply follows the kernel's ``busy`` status message, so
a prompt typed in a ``signaling="kernel"`` view waited for its ack up to 40 ms longer
(``bench/signaling.py --settle-ms 0 --compare-nagle``: 52 -> 19 ms at p50). The extension wraps
whatever kernel WebSocket connection class the server uses (the default ZMQ one, or a gateway's)
in a subclass that sets ``TCP_NODELAY`` when a page connects, as asyncio and the ``websockets``
library do for every connection by default.

It also serves the widget's on-demand front-end assets (``livekit.js``, ...) at immutable URLs
named by their hash (decart_widget/_asset_route.py), so the browser caches them and their compiled
code across pages; without the extension the page gets them over the widget comm.

Installed with the package and enabled by
``etc/jupyter/jupyter_server_config.d/decart_widget.json``; ``jupyter server extension disable
decart_widget`` turns it off. The Nagle part imports no Jupyter module itself: the server hands it
what it needs.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("decart_widget.server_extension")

SETTING = "kernel_websocket_connection_class"


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Called by Jupyter server once its web application exists."""
    settings = serverapp.web_app.settings
    _serve_assets(serverapp)
    current = settings.get(SETTING)
    if current is None:
        serverapp.log.warning(
            "decart_widget: no %s setting in this server; nothing changed", SETTING
        )
        return
    settings[SETTING] = without_nagle(current)
    serverapp.log.info("decart_widget: kernel WebSockets send without Nagle's delay (TCP_NODELAY)")


def _serve_assets(serverapp: Any) -> None:
    try:
        from ._asset_route import asset_handlers

        serverapp.web_app.add_handlers(".*$", asset_handlers(serverapp.base_url))
    except Exception:  # the page falls back to the comm: never stop the server for this
        serverapp.log.warning("decart_widget: front-end assets not served over HTTP", exc_info=True)
        return
    serverapp.log.info(
        "decart_widget: front-end assets served at %sdecart-widget/assets/", serverapp.base_url
    )


def without_nagle(connection_class: type[Any]) -> type[Any]:
    """A subclass of a kernel WebSocket connection class that sets ``TCP_NODELAY`` on connect."""
    if getattr(connection_class, "_decart_no_delay", False):
        return connection_class

    class NoDelayConnection(connection_class):  # type: ignore[misc]
        _decart_no_delay = True

        def connect(self) -> Any:
            try:
                self.websocket_handler.set_nodelay(True)
            except Exception:  # a closed socket or a handler without one: keep the default
                logger.debug("could not set TCP_NODELAY on a kernel WebSocket", exc_info=True)
            return super().connect()

    NoDelayConnection.__name__ = NoDelayConnection.__qualname__ = (
        f"NoDelay{connection_class.__name__}"
    )
    return NoDelayConnection
