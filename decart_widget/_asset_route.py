"""The front-end assets over HTTP, from the package's Jupyter server extension.

``GET <base_url>decart-widget/assets/<build id>/<name>.js`` answers with the package's built asset
``name`` (``livekit``, ``webrtc``, ``frames``, ``sources``: decart_widget/widget/_assets.py) when
``<build id>`` is the first 16 hex digits of its sha-256, the id the page's ``widget.js`` was built
with; anything else is a 404. Such a URL names one content forever, so it is cached for a year as
immutable: the browser keeps the asset in its HTTP cache and, from the third page that imports it
on, V8's code cache for it, across pages and sessions (an asset sent over the comm is imported from
a blob URL, which neither cache applies to). The route is behind the server's own login, like
every page of it; the front end falls back to the comm when it fails (js/src/asset_loader.ts).
"""

from __future__ import annotations

import logging
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .widget._assets import served_asset
from .widget._widget import STATIC

logger = logging.getLogger("decart_widget.asset_route")

#: Under the server's base URL; js/src/asset_loader.ts builds the same path.
PREFIX = "decart-widget/assets"
ROUTE = PREFIX + r"/([0-9a-f]{16})/([a-z]{1,32})\.js"
CACHE_CONTROL = "private, max-age=31536000, immutable"


class AssetHandler(JupyterHandler):
    """One built asset, by build id and name."""

    @web.authenticated  # type: ignore[untyped-decorator,unused-ignore]
    def get(self, build_id: str, name: str) -> None:
        data = served_asset(STATIC, name, build_id)
        if data is None:
            raise web.HTTPError(404)
        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        self.set_header("Cache-Control", CACHE_CONTROL)
        self.finish(data)


def asset_handlers(base_url: str) -> list[tuple[str, Any]]:
    """The route to add to the server's web application."""
    return [(url_path_join(base_url, ROUTE), AssetHandler)]
