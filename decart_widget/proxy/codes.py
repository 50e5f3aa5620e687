"""WebSocket close codes the proxy sends, and how it maps the codes it receives.

The reference proxy (docs/protocol.md) keeps 1000 and >= 3000 and turns every other code into 1000,
which hides the concurrency limit (1013) and every upstream failure. Here each outcome a client
must tell apart has its own code and a human reason (cut to the protocol's 123-byte limit):

=====  =============================================================================
code   meaning
=====  =============================================================================
1000   normal end (either side closed normally)
1001   going away: the proxy is shutting down, or the upstream said so; reconnect
1011   upstream failure: unreachable, lost mid-session, internal error, ledger down; or the
       platform is misconfigured: the service refused the proxy's own key (never 4001, which
       would make clients blame the user's token)
4000   bad request: missing or invalid ``model`` / ``resolution``
4001   unauthorized: missing, invalid or expired token, or origin not allowed
4002   usage quota exhausted ("insufficient_credits")
4008   policy violation: a malformed frame (not a JSON object with a string type)
4009   frame too big, or too much data sent before the upstream connection opened
4013   concurrent session limit reached (the service's 1013, or this user's limit)
4029   too many prompts: the per-session prompt rate was exceeded
=====  =============================================================================

Frames that break RFC 6455 itself never reach the relay: aiohttp closes those sockets with 1007
(a text frame that is not UTF-8) or 1002 (reserved bits, unknown opcode, bad control frame).

Codes 4000-4999 are for applications (RFC 6455 §7.4.2), so every browser passes them through.
"""

from __future__ import annotations

from ..protocol._constants import CLOSE_NORMAL, CLOSE_PROXY_CONCURRENCY, CLOSE_TRY_AGAIN_LATER

NORMAL = CLOSE_NORMAL
GOING_AWAY = 1001
UPSTREAM_ERROR = 1011
BAD_REQUEST = 4000
UNAUTHORIZED = 4001
QUOTA_EXHAUSTED = 4002
MALFORMED_FRAME = 4008
FRAME_TOO_BIG = 4009
CONCURRENCY_LIMIT = CLOSE_PROXY_CONCURRENCY
RATE_LIMITED = 4029

#: Upstream close codes meaning the service refused the proxy's own credentials (the user's
#: token never travels upstream, so these are never the user's fault).
UPSTREAM_KEY_REFUSED = frozenset({UNAUTHORIZED, 4003})
#: HTTP statuses of a refused upstream handshake meaning the same.
UPSTREAM_KEY_REFUSED_STATUS = frozenset({401, 403})
#: What the client reads then: a server-side error, worded so that no client takes it for a
#: bad user token (no "unauthorized", "invalid api key", "401"...).
KEY_REFUSED_REASON = (
    "server error: the platform is misconfigured (the service refused the proxy's credentials)"
)

#: The longest close reason RFC 6455 allows (125-byte payload minus the 2-byte code).
MAX_REASON_BYTES = 123

# Codes a server may not put on the wire (RFC 6455 §7.4.1): they only describe local events.
_RESERVED = frozenset({1004, 1005, 1006, 1015})


def cut_reason(reason: str | bytes | None) -> str:
    """A close reason that fits in 123 bytes of UTF-8, cut on a character boundary."""
    if reason is None:
        return ""
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", errors="replace")
    data = reason.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return reason
    cut = data[: MAX_REASON_BYTES - 3]
    return cut.decode("utf-8", errors="ignore") + "..."


def from_upstream(code: int | None, reason: str) -> tuple[int, str]:
    """The code and reason the client gets when the upstream closed with ``code``.

    ``None`` (or a reserved code such as 1006) means the connection was lost without a close
    frame.
    """
    if code is None or code in _RESERVED:
        if code == 1005:  # a close frame without a code: a normal end
            return NORMAL, cut_reason(reason)
        return UPSTREAM_ERROR, cut_reason(reason or "upstream connection lost")
    if code in (NORMAL, GOING_AWAY, UPSTREAM_ERROR, 1012, 1014):
        return code, cut_reason(reason)
    if code == CLOSE_TRY_AGAIN_LATER:
        return CONCURRENCY_LIMIT, cut_reason(reason or "Concurrent session limit reached.")
    if code == 1008:
        return MALFORMED_FRAME, cut_reason(reason or "upstream policy violation")
    if code == 1009:
        return FRAME_TOO_BIG, cut_reason(reason or "upstream: frame too big")
    if code in (1002, 1003, 1007, 1010):
        return UPSTREAM_ERROR, cut_reason(f"upstream protocol error {code}: {reason}".rstrip(": "))
    if 3000 <= code <= 4999:
        return code, cut_reason(reason)
    return NORMAL, cut_reason(reason)


def from_client(code: int | None) -> int:
    """The code the upstream gets when the client closed with ``code``."""
    if code is None:
        return GOING_AWAY
    if code in (NORMAL, GOING_AWAY) or 3000 <= code <= 4999:
        return code
    if code == 1006:  # the client vanished
        return GOING_AWAY
    return NORMAL
