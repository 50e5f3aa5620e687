"""Front-end assets the page loads on demand, sent over the widget comm (js/src/asset_loader.ts).

The media transports are not in ``widget.js``, which every notebook loads: ``static/webrtc.js``
(Gen-A, a few kB) and ``static/livekit.js`` (Gen-B: npm ``livekit-client`` and the room link,
about half a megabyte), nor is ``w.snapshot()``'s frame capture (``static/frames.js``), nor
are the screen and video-file sources (``static/sources.js``). The front end asks for one with
``{"type":"asset_request","name":"livekit"}`` when a session of that transport starts, once per
page, and imports what it gets. Never from a CDN: the bytes come from this package. Answers:

* ``{"type":"asset","name":…,"hash":<sha-256 hex>,"index":i,"count":n}`` with one binary buffer
  per message, ``n`` messages in all (the Jupyter comm refuses messages over ~10 MB);
* ``{"type":"asset_error","name":…,"kind":…,"message":…}`` when the asset is unknown or missing.

The front end checks ``hash`` against the id its ``widget.js`` was built with, so a page never
runs an asset of another build.

In JupyterLab and Notebook 7 the page first imports the asset over HTTP from the package's Jupyter
server extension (``decart_widget/_asset_route.py``), at a URL named by that same id: the browser
then keeps it in its HTTP cache and V8 code cache across pages. The comm stays the way wherever
that URL does not answer (docs/architecture.md, "The front end").
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("decart_widget.widget.assets")

#: The assets the front end may ask for, by name, as files of the package's ``static/``.
ASSETS = {
    "webrtc": "webrtc.js",
    "livekit": "livekit.js",
    "frames": "frames.js",
    "sources": "sources.js",
}
#: Bytes per comm message: well under the comm's ~10 MB message limit.
CHUNK_BYTES = 4 * 1024 * 1024

Message = tuple[dict[str, Any], list[bytes]]


@functools.lru_cache(maxsize=8)
def _read(path: Path, mtime_ns: int, size: int) -> tuple[bytes, str]:
    """The file and its sha-256 (cached until the file changes: a rebuild in a dev checkout)."""
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


#: The build ids widget.js carries: the first 16 hex digits of an asset's sha-256.
BUILD_ID_LENGTH = 16


def served_asset(static: Path, name: str, build_id: str) -> bytes | None:
    """The bytes of the asset ``name`` if ``build_id`` names them (its sha-256 prefix), else None.

    Only a name of `ASSETS` is looked up, so no request can reach another file."""
    file = ASSETS.get(name)
    if file is None or len(build_id) != BUILD_ID_LENGTH:
        return None
    path = static / file
    try:
        stat = path.stat()
        data, digest = _read(path, stat.st_mtime_ns, stat.st_size)
    except OSError as exc:
        log.warning("the front-end asset %s cannot be read: %s", path, exc)
        return None
    return data if digest.startswith(build_id.lower()) else None


def asset_messages(static: Path, name: object, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Message]:
    """The comm messages that answer an ``asset_request`` for ``name``."""
    file = ASSETS.get(name) if isinstance(name, str) else None
    if file is None:
        yield _error(name, "invalid_input", f"No front-end asset is called {name!r}.")
        return
    path = static / file
    try:
        stat = path.stat()
        data, digest = _read(path, stat.st_mtime_ns, stat.st_size)
    except OSError as exc:
        log.warning("the front-end asset %s cannot be read: %s", path, exc)
        yield _error(
            name,
            "error",
            f"The {name} front-end asset is missing ({path}): reinstall decart-widget "
            "(or run `bash scripts/setup.sh` in a source checkout).",
        )
        return
    count = max(1, -(-len(data) // chunk_bytes))
    log.debug("sending the %s asset: %d bytes in %d message(s)", name, len(data), count)
    for index in range(count):
        chunk = data[index * chunk_bytes : (index + 1) * chunk_bytes]
        header = {"type": "asset", "name": name, "hash": digest, "index": index, "count": count}
        yield header, [chunk]


def _error(name: object, kind: str, message: str) -> Message:
    return {"type": "asset_error", "name": name, "kind": kind, "message": message}, []
