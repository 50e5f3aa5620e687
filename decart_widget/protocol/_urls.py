"""Building realtime URLs, and redacting credentials from anything printed or logged.

Browsers cannot set WebSocket headers, so the key travels in the query string (docs/protocol.md).
Every URL that reaches a log, a repr or an exception goes through `redact` first.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit, urlunsplit

from ._errors import InvalidInput

STREAM_PATH = "/v1/stream"
#: The output resolutions Decart's service takes (``resolution=``); absent: the model's default.
RESOLUTIONS = ("720p", "1080p")
_SECRET_PARAMS = ("api_key", "token", "key", "access_token")
_SECRET_QUERY = re.compile(
    r"(?P<name>(?:" + "|".join(_SECRET_PARAMS) + r"))=(?P<value>[^&#\s'\"]+)", re.IGNORECASE
)
# Decart keys and client tokens; the proxy's user tokens (``dwp1.<payload>.<signature>``).
_SECRET_WORD = re.compile(r"\b(?:(?:dct|ek)_[A-Za-z0-9_\-]{4,}|dwp1\.[A-Za-z0-9_\-.]{4,})")
# Credentials in HTTP header text (a library quoting a header line it could not parse):
# ``Bearer <token>``/``Basic <credentials>``, and whole ``Cookie:`` values.
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+[^\s'\"\\]{8,}")
_COOKIE_HEADER = re.compile(r"(?P<name>\b(?:[Ss]et-)?[Cc]ookie):[^'\"\r\n]*")
# The password of a URL's user info: ``scheme://user:password@host``.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/@:\s'\"]*):[^/@\s'\"]*@")


def build_stream_url(
    realtime_base: str,
    api_key: str,
    model: str,
    *,
    resolution: str | None = None,
    user_agent: str | None = None,
) -> str:
    """The `/v1/stream` URL with every parameter encoded (the model name is opaque)."""
    parts = urlsplit(realtime_base)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(
            f"realtime URL must start with ws:// or wss://, got {redact(realtime_base)!r}"
        )
    params: dict[str, str] = {"api_key": api_key, "model": model}
    if resolution is not None:
        params["resolution"] = resolution
    if user_agent is not None:
        params["user_agent"] = user_agent
    path = parts.path.rstrip("/") + STREAM_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(params), ""))


def check_resolution(resolution: object) -> str | None:
    """``resolution`` if it is one of `RESOLUTIONS` (or None), else `InvalidInput`.

    `build_stream_url` itself passes any value through (the proxy relays what its clients ask);
    the clients check theirs here first.
    """
    if resolution is None:
        return None
    if isinstance(resolution, str) and resolution in RESOLUTIONS:
        return resolution
    known = " or ".join(repr(value) for value in RESOLUTIONS)
    raise InvalidInput(f"resolution must be {known} (or None for the default), got {resolution!r}")


def redact(text: str) -> str:
    """Replace every credential in a URL or message by `***` (query parameters named like a
    key or token, ``dct_``/``ek_`` keys, ``dwp1.`` proxy tokens, the password of
    ``scheme://user:password@host``, ``Bearer``/``Basic`` credentials, ``Cookie:`` values)."""
    # Each pattern needs a literal its match always contains: most text (every field of every
    # log line) has none of them and skips the regular expressions (the proxy's per-frame cost).
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", text)
    if "Bearer" in text or "Basic" in text:
        text = _AUTH_SCHEME.sub(lambda m: f"{m.group('scheme')} ***", text)
    if "ookie:" in text:
        text = _COOKIE_HEADER.sub(lambda m: f"{m.group('name')}: ***", text)
    if "=" in text:
        text = _SECRET_QUERY.sub(lambda m: f"{m.group('name')}=***", text)
    if "dct_" in text or "ek_" in text or "dwp1." in text:
        text = _SECRET_WORD.sub("***", text)
    return text


def redact_key(key: str) -> str:
    """A safe way to show which key is in use: its prefix and last 4 characters."""
    if len(key) <= 8:
        return "***"
    prefix = key.split("_", 1)[0] + "_" if "_" in key[:5] else ""
    return f"{prefix}***{key[-4:]}"


def url_host(host: str) -> str:
    """The host to put in a URL for a server bound to ``host`` (wildcards -> loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
