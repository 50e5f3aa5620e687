"""The typed error taxonomy: every failure a user can see is one of these.

Server error strings are free text ("Invalid API key", "insufficient_credits", ...). `classify`
turns such a string into the right exception class, and `is_permanent` says whether retrying can
ever help (docs/protocol.md, "Error vocabulary").
"""

from __future__ import annotations

from ._constants import (
    CONCURRENCY_MARKERS,
    CREDIT_MARKERS,
    MODEL_MARKERS,
    MODERATION_MARKERS,
    ORIGIN_MARKERS,
    PERMANENT_MARKERS,
)


class DecartError(Exception):
    """Base of every error decart-widget raises on purpose."""

    #: A stable short name, also used by the front end (``last_error_type``).
    kind = "error"
    #: True when retrying the same request cannot succeed.
    permanent = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthenticationError(DecartError):
    """The key or client token was refused (invalid, expired, wrong origin or model)."""

    kind = "authentication"
    permanent = True


class ModerationError(DecartError):
    """A prompt or image was rejected by moderation; the previous state stays in force."""

    kind = "moderation"
    permanent = True


class InsufficientCredits(DecartError):
    """The account has no credits left."""

    kind = "credits"
    permanent = True


class ConcurrencyLimit(DecartError):
    """Too many sessions at once for this key (WebSocket close 1013)."""

    kind = "concurrency"
    permanent = True


class AckTimeout(DecartError):
    """The server did not acknowledge a prompt or image in time."""

    kind = "ack_timeout"


class ConnectionLost(DecartError):
    """The connection to the service could not be made or was lost for good."""

    kind = "connection"


class SessionEnded(DecartError):
    """The server ended the generation (time limit, server error, shutdown)."""

    kind = "session_ended"

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


class InvalidInput(DecartError):
    """The request was malformed: bad prompt, image, model name or option."""

    kind = "invalid_input"
    permanent = True


class ProtocolError(DecartError):
    """A frame on the wire did not follow the protocol."""

    kind = "protocol"


class MissingDependency(InvalidInput, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it.
    Also an `ImportError`, so ``except ImportError`` catches it."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


ERROR_KINDS: dict[str, type[DecartError]] = {
    cls.kind: cls
    for cls in (
        DecartError,
        AuthenticationError,
        ModerationError,
        InsufficientCredits,
        ConcurrencyLimit,
        AckTimeout,
        ConnectionLost,
        SessionEnded,
        InvalidInput,
        ProtocolError,
    )
}


def is_permanent(error_text: str) -> bool:
    """True when an error text means a retry cannot help (the SDKs' rule, plus ours)."""
    lowered = error_text.lower()
    return any(
        marker in lowered
        for marker in (
            *PERMANENT_MARKERS,
            *MODEL_MARKERS,
            *CREDIT_MARKERS,
            *MODERATION_MARKERS,
        )
    )


def classify(error_text: str) -> DecartError:
    """Turn a server error string into the matching typed exception."""
    lowered = error_text.lower()
    if any(marker in lowered for marker in CREDIT_MARKERS):
        return InsufficientCredits(error_text)
    if any(marker in lowered for marker in CONCURRENCY_MARKERS):
        return ConcurrencyLimit(error_text)
    if any(marker in lowered for marker in MODERATION_MARKERS):
        return ModerationError(error_text)
    if any(marker in lowered for marker in MODEL_MARKERS):
        return InvalidInput(error_text)
    if any(marker in lowered for marker in (*PERMANENT_MARKERS, *ORIGIN_MARKERS)):
        return AuthenticationError(error_text)
    return DecartError(error_text)


def permanent_error(error_text: str) -> DecartError | None:
    """The typed error of a server error text if retrying cannot help, else None."""
    error = classify(error_text)
    return error if error.permanent or is_permanent(error_text) else None


def ended_error(reason: str, server_error: str | None) -> DecartError | None:
    """What a ``generation_ended`` ``reason`` means: None for the clean ``"disconnect"``, else the
    error that ends the session; ``server_error`` is the transient error the server sent before,
    if any."""
    if reason == "disconnect":
        return None
    if reason == "insufficient_credits":
        return InsufficientCredits("insufficient credits: the generation was stopped")
    if reason == "moderation_violation":
        return ModerationError("the generation was stopped by moderation")
    if reason == "timeout":
        return SessionEnded("the session reached its time limit", reason="timeout")
    if server_error:
        return SessionEnded(f"the server ended the generation: {server_error}", reason=reason)
    return SessionEnded(f"the server ended the generation ({reason})", reason=reason)


def from_kind(kind: str, message: str) -> DecartError:
    """Rebuild an error from its ``kind`` (as sent by the front end or over a comm)."""
    return ERROR_KINDS.get(kind, DecartError)(message)
