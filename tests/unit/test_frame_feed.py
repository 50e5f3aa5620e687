"""The kernel's side of Python frames to a page (`decart_widget.widget._frame_feed`): what the
page is sent for each of its messages, the window of unacknowledged frames, the sizes, the checks.

The page is played by the test: it calls `FrameFeed.message` as the comm would and reads what
the feed sent. Sync sources are pulled on the feed's thread, async ones on a private loop.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest

from decart_widget.protocol import InvalidInput
from decart_widget.widget._frame_feed import (
    WINDOW,
    FrameFeed,
    check_source,
    fit,
)
from decart_widget.widget._frames import check_fps


class Page:
    """What a page was sent, in order (the feed sends from its own thread)."""

    def __init__(self) -> None:
        self.messages: list[tuple[dict[str, Any], list[bytes]]] = []
        self.changed = threading.Condition()

    def send(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        with self.changed:
            self.messages.append((content, buffers))
            self.changed.notify_all()

    def of(self, kind: str) -> list[tuple[dict[str, Any], list[bytes]]]:
        with self.changed:
            return [m for m in self.messages if m[0]["type"] == kind]

    def wait(self, kind: str, count: int, timeout: float = 10.0) -> None:
        with self.changed:
            ok = self.changed.wait_for(
                lambda: sum(m[0]["type"] == kind for m in self.messages) >= count, timeout
            )
        assert ok, f"{count} {kind} message(s); got {[m[0] for m in self.messages]}"


def solid(value: int, width: int = 8, height: int = 6) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


def counting(pulled: list[int]) -> Iterator[np.ndarray]:
    for index in itertools.count():
        pulled.append(index)
        yield solid(index % 256)


def test_frames_go_to_the_open_page_as_rgb_buffers_of_their_size() -> None:
    page = Page()
    feed = FrameFeed(check_source(counting([])), page.send, fps=30)
    feed.message({"type": "source_open", "id": "a", "width": 0, "height": 0})
    page.wait("source_frame", 1)
    header, buffers = page.of("source_frame")[0]
    assert header == {"type": "source_frame", "id": "a", "width": 8, "height": 6}
    assert buffers == [solid(0).tobytes()]
    feed.close()


def test_no_more_than_the_window_is_unacknowledged_and_the_source_waits() -> None:
    page, pulled = Page(), []
    feed = FrameFeed(check_source(counting(pulled)), page.send, fps=30)
    feed.message({"type": "source_open", "id": "a"})
    page.wait("source_frame", WINDOW)
    time.sleep(0.5)  # fifteen intervals at 30 fps: a pump ignoring the window would send them
    assert len(page.of("source_frame")) == WINDOW
    assert len(pulled) == WINDOW  # the source is not advanced either: nothing queues
    for expected in range(WINDOW + 1, WINDOW + 4):
        feed.message({"type": "source_ack", "id": "a"})
        page.wait("source_frame", expected)
    assert feed.most_in_flight == WINDOW
    feed.close()


def test_acks_of_another_page_do_not_open_the_window() -> None:
    page = Page()
    feed = FrameFeed(check_source(counting([])), page.send, fps=30)
    feed.message({"type": "source_open", "id": "a"})
    page.wait("source_frame", WINDOW)
    for _ in range(5):
        feed.message({"type": "source_ack", "id": "someone-else"})
    time.sleep(0.3)
    assert len(page.of("source_frame")) == WINDOW
    feed.close()


def test_a_new_page_takes_over_and_a_closed_one_stops_the_sending() -> None:
    page, pulled = Page(), []
    feed = FrameFeed(check_source(counting(pulled)), page.send, fps=30)
    feed.message({"type": "source_open", "id": "a"})
    page.wait("source_frame", WINDOW)
    feed.message({"type": "source_open", "id": "b", "width": 4, "height": 4})
    page.wait("source_frame", 2 * WINDOW)
    later = [h for h, _ in page.of("source_frame")[WINDOW:]]
    assert {h["id"] for h in later} == {"b"}
    assert all((h["width"], h["height"]) == (4, 4) for h in later)  # covered and cropped
    feed.message({"type": "source_close", "id": "b"})
    count = len(pulled)
    time.sleep(0.3)
    assert len(pulled) <= count + 1  # at most the frame being pulled at the close
    feed.close()


def test_the_end_of_the_source_is_said_and_said_again_to_a_later_page() -> None:
    page = Page()
    feed = FrameFeed(check_source([solid(1), solid(2)]), page.send, fps=30)
    feed.message({"type": "source_open", "id": "a"})
    page.wait("source_frame", 2)
    feed.message({"type": "source_ack", "id": "a"})
    page.wait("source_end", 1)
    feed.message({"type": "source_open", "id": "b"})
    page.wait("source_end", 2)
    assert [h["id"] for h, _ in page.of("source_end")] == ["a", "b"]
    feed.close()


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (np.zeros((4, 4), dtype=np.uint8), "H x W x 3"),
        (np.zeros((4, 4, 3), dtype=np.float32), "uint8"),
        ("not a frame", "numpy arrays"),
    ],
)
def test_a_bad_frame_fails_the_source_with_why(bad: Any, words: str) -> None:
    page, failures = Page(), []
    feed = FrameFeed(check_source([bad]), page.send, fps=30, failed=failures.append)
    feed.message({"type": "source_open", "id": "a"})
    page.wait("source_error", 1)
    assert words in page.of("source_error")[0][0]["message"]
    assert failures and words in failures[0]
    feed.close()


def test_a_source_that_raises_is_reported() -> None:
    def broken() -> Iterator[np.ndarray]:
        yield solid(1)
        raise RuntimeError("camera unplugged")

    page, failures = Page(), []
    feed = FrameFeed(check_source(broken()), page.send, fps=30, failed=failures.append)
    feed.message({"type": "source_open", "id": "a"})
    feed.message({"type": "source_ack", "id": "a"})
    page.wait("source_error", 1)
    assert "camera unplugged" in failures[0]
    feed.close()


def test_an_async_source_is_pulled_on_a_loop_at_the_stated_rate_bound() -> None:
    async def frames() -> AsyncIterator[np.ndarray]:
        for index in itertools.count():
            yield solid(index % 256)

    page = Page()
    feed = FrameFeed(check_source(frames()), page.send, fps=10)
    feed.message({"type": "source_open", "id": "a"})
    page.wait("source_frame", 1)
    started = time.monotonic()
    for expected in range(2, 5):
        feed.message({"type": "source_ack", "id": "a"})
        page.wait("source_frame", expected)
    # three more frames at 10 fps: never sooner than the rate allows
    assert time.monotonic() - started >= 0.2
    values = [bytes(b[0])[0] for _, b in page.of("source_frame")]
    assert values == [0, 1, 2, 3]
    feed.close()


def test_a_function_is_called_at_the_first_start_only() -> None:
    calls = []

    def make() -> Iterator[np.ndarray]:
        calls.append(1)
        return itertools.repeat(solid(5))

    page = Page()
    feed = FrameFeed(check_source(make), page.send, fps=30)
    assert calls == []
    feed.message({"type": "source_open", "id": "a"})
    page.wait("source_frame", 1)
    feed.message({"type": "source_open", "id": "b"})
    page.wait("source_frame", WINDOW + 1)
    assert calls == [1]
    feed.close()


@pytest.mark.parametrize(
    ("source", "words"),
    [
        (np.zeros((4, 4, 3), dtype=np.uint8), "single frame"),
        ("webcam", "'camera'"),
        (b"bytes", "'camera'"),
        (42, "got int"),
    ],
)
def test_bad_sources_are_refused_with_what_is_accepted(source: Any, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        check_source(source)


@pytest.mark.parametrize("fps", [0, -1, 31, True, "5"])
def test_bad_rates_are_refused_naming_the_argument(fps: Any) -> None:
    with pytest.raises(InvalidInput, match=r"^source_fps must be a number in \(0, 30\]; got "):
        check_fps(fps, "source_fps")
    with pytest.raises(InvalidInput, match=r"^fps must be"):
        check_fps(fps)


def test_fit_covers_and_crops_big_frames_and_leaves_small_ones() -> None:
    wide = np.zeros((100, 400, 3), dtype=np.uint8)
    wide[:, 150:250] = 255  # a white band in the middle
    fitted = fit(wide, 50, 50)
    assert fitted.shape == (50, 50, 3)
    assert fitted[:, 25].min() == 255  # the centre is kept
    small = solid(1, 20, 10)
    assert fit(small, 1088, 624) is small  # the page scales it up: fewer bytes
    huge = np.zeros((2160, 3840, 3), dtype=np.uint8)
    assert fit(huge, 0, 0).shape == (1080, 1920, 3)


def test_a_failing_comm_stops_the_feed_and_says_why() -> None:
    failures: list[str] = []
    pulled: list[int] = []

    def send(content: dict[str, Any], buffers: list[bytes]) -> None:
        raise RuntimeError("comm gone")

    feed = FrameFeed(check_source(counting(pulled)), send, fps=30, failed=failures.append)
    feed.message({"type": "source_open", "id": "a"})
    deadline = time.monotonic() + 10
    while not failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert failures == ["frames could not be sent: comm gone"]
    time.sleep(0.2)
    assert len(pulled) == 1  # stopped: the source is not pulled any more
    feed.close()
