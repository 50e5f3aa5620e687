"""Request bookkeeping for the session core: desired versus accepted prompt and image.

The desired state is always derived: ``base`` (the accepted state, or before the first ack the
state a session starts from) with the in-flight update applied, then the queued one. So a failed
or timed-out update "reverts" simply by being dropped, and a reconnect replays exactly the latest
desired state. `clean_prompt` / `clean_image` (and `prompt_change` / `image_change`, which build
a request's change with them) check a request's values. Pure data, no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ._constants import MAX_IMAGE_BYTES, decoded_size
from ._errors import InvalidInput
from .messages import Prompt, SetImage


class Keep(Enum):
    """Marker for "this field is not changed" (the image may legitimately be set to None)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True)
class Settings:
    """What the model is (or should be) doing: a prompt and a reference image (raw base64)."""

    prompt: str | None = None
    image: str | None = None


@dataclass(frozen=True)
class Change:
    """A change of `Settings`; a field left at ``KEEP`` stays as it is (None clears it)."""

    prompt: str | Keep | None = KEEP
    image: str | Keep | None = KEEP

    @property
    def sets_prompt(self) -> bool:
        return not isinstance(self.prompt, Keep)

    @property
    def sets_image(self) -> bool:
        return not isinstance(self.image, Keep)

    def apply(self, settings: Settings) -> Settings:
        return Settings(
            prompt=settings.prompt if isinstance(self.prompt, Keep) else self.prompt,
            image=settings.image if isinstance(self.image, Keep) else self.image,
        )

    def then(self, newer: Change) -> Change:
        """This change followed by ``newer`` (newer fields win)."""
        return Change(
            prompt=newer.prompt if newer.sets_prompt else self.prompt,
            image=newer.image if newer.sets_image else self.image,
        )

    def covered_by(self, newer: Change) -> bool:
        """True when ``newer`` sets every field this change sets (so this one is superseded)."""
        prompt_ok = not self.sets_prompt or newer.sets_prompt
        image_ok = not self.sets_image or newer.sets_image
        return prompt_ok and image_ok


@dataclass
class Update:
    """A change waiting to be sent, with the requests (id, own change) that settle with its ack."""

    change: Change = field(default_factory=Change)
    requests: list[tuple[int, Change]] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [request_id for request_id, _ in self.requests]

    def absorb(self, newer: Update) -> list[int]:
        """Merge ``newer`` into this update; return the ids of the requests it superseded.

        A request is superseded when ``newer`` sets every field it set; the others ride along.
        """
        superseded = [rid for rid, change in self.requests if change.covered_by(newer.change)]
        self.requests = [
            *((rid, change) for rid, change in self.requests if rid not in superseded),
            *newer.requests,
        ]
        self.change = self.change.then(newer.change)
        return superseded


@dataclass(eq=False)
class InFlight:
    """An update on the wire, waiting for its ack (identity matters: the image FIFO holds it)."""

    message: Prompt | SetImage
    update: Update
    #: when its ack is overdue; None: its sender keeps the time (a frame only observed)
    deadline: float | None
    initial: bool = False
    #: the prompt text its ack will carry (a hook may have changed it on the way)
    ack_prompt: str | None = None

    @property
    def ack_text(self) -> str | None:
        if self.ack_prompt is not None:
            return self.ack_prompt
        return self.message.prompt if isinstance(self.message, Prompt) else None

    def settings_after(self, accepted: Settings) -> Settings:
        """The server's state once this message is applied on top of ``accepted``.

        ``set_image`` replaces prompt and image; ``prompt`` only the prompt, except for the
        handshake, which starts a fresh server session (no image).
        """
        message = self.message
        if isinstance(message, SetImage):
            return Settings(message.prompt, message.image_data)
        return Settings(message.prompt, None if self.initial else accepted.image)


def message_for(target: Settings, change: Change, enhance: bool, full: bool) -> Prompt | SetImage:
    """The frame that moves the server to ``target``.

    ``full`` (the handshake) sends the whole state: image -> ``set_image`` with the prompt, else
    prompt -> ``prompt``, else the passthrough ``set_image`` with both null. Otherwise a change
    that touches the image sends ``set_image`` (with the prompt), and a prompt change ``prompt``.
    """
    if full:
        if target.image is not None:
            return SetImage(target.image, target.prompt, enhance)
        if target.prompt is not None:
            return Prompt(target.prompt, enhance)
        return SetImage(None, None, enhance)
    if change.sets_image or target.prompt is None:
        return SetImage(target.image, target.prompt, enhance)
    return Prompt(target.prompt, enhance)


def clean_prompt(text: object) -> str | None:
    """A prompt, or None for no prompt (None, empty or blank)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidInput(f"prompt must be a string or None, got {type(text).__name__}")
    return text if text.strip() else None


def clean_image(image: object) -> str | None:
    """Raw base64 (a ``data:`` URL prefix is stripped), checked against `MAX_IMAGE_BYTES`."""
    if image is None:
        return None
    if not isinstance(image, str):
        raise InvalidInput(f"image must be base64 text or None, got {type(image).__name__}")
    if image.startswith("data:"):
        head, comma, image = image.partition(",")
        if not comma or not head.endswith(";base64"):
            raise InvalidInput("an image data URL must be base64-encoded")
    image = image.strip()
    if not image:
        raise InvalidInput("image is empty (use None to clear it)")
    size = decoded_size(image)
    if size > MAX_IMAGE_BYTES:
        limit = f"{MAX_IMAGE_BYTES / 2**20:g} MiB"
        raise InvalidInput(f"image is {size / 2**20:.1f} MiB; the limit is {limit}")
    return image


def prompt_change(text: str | None) -> Change:
    """A set_prompt's change: the prompt, or None to clear it; a blank one is `InvalidInput`."""
    if text is not None and not (isinstance(text, str) and text.strip()):
        raise InvalidInput("prompt is empty (use None to clear it)")
    return Change(prompt=clean_prompt(text))


def image_change(image: str | None, prompt: str | None = None) -> Change:
    """A set_image's change: the image, or None to clear it; the prompt kept (None) or set (a
    blank one clears it)."""
    return Change(prompt=KEEP if prompt is None else clean_prompt(prompt), image=clean_image(image))
