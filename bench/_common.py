"""What the benches share: Chromium's flags and the machine's load average."""

from __future__ import annotations

import os

# Debian's Chromium with fake media; timers and rendering never throttled (a page under
# measurement may be in the background of the headless browser).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, e.g. ``"1.22 1.79 2.55"``."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
