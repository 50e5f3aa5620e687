"""The emulator's moderation: a configurable blocklist of words.

* A prompt is rejected when it contains a blocklisted word (case-insensitive substring).
* An image is rejected when its raw bytes contain a blocklisted word in ASCII/UTF-8, in any case.
  That makes rejection testable with real images: put the word in a PNG text chunk
  (``PngInfo().add_text("Comment", "forbidden")``) or a JPEG comment; the pixels stay valid.

A rejected prompt or image is acked with ``success: false`` and the previous state stays in force.
"""

from __future__ import annotations

from collections.abc import Iterable

PROMPT_REJECTED = "Prompt rejected by moderation"
IMAGE_REJECTED = "Image rejected by moderation"

DEFAULT_BLOCKLIST = ("violence", "forbidden")


class Moderator:
    def __init__(self, blocklist: Iterable[str] = DEFAULT_BLOCKLIST) -> None:
        words = [word.strip().lower() for word in blocklist if word and word.strip()]
        self.words: tuple[str, ...] = tuple(words)
        self._byte_words = tuple(word.encode("utf-8") for word in words)

    def prompt_allowed(self, prompt: str) -> bool:
        lowered = prompt.lower()
        return not any(word in lowered for word in self.words)

    def image_allowed(self, data: bytes) -> bool:
        if not self._byte_words:
            return True
        lowered = data.lower()
        return not any(word in lowered for word in self._byte_words)
