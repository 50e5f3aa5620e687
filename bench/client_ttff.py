"""Headless client bench: time to the first transformed frame, Gen-B (LiveKit) against Gen-A.

Run ``python bench/client_ttff.py [--rounds 5] [--size 320x192]``.
Not part of the test run; it prints figures and never fails on them.

One emulator on 127.0.0.1; each round connects `dw.RealtimeSession` once per transport,
interleaved (``livekit``, ``webrtc``, ``livekit``, ...) so both see the same machine load, with a
solid-colour source and the prompt ``"invert"``. For each session: ``connect`` = until
`RealtimeSession.connect` returns (media flowing: the room joined and published, or the peer
connected); ``first`` = until the first frame that is the source inverted (the placeholder frames
a room sends before the camera reaches the model do not count); then it disconnects.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Iterator

import numpy as np

import decart_widget as dw

COLOUR = (200, 40, 40)
INVERTED = np.array((55, 215, 215))


def frames(width: int, height: int) -> Iterator[np.ndarray]:
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = COLOUR
    while True:
        yield frame


async def one(
    emulator: dw.Emulator, transport: str, width: int, height: int
) -> tuple[float, float]:
    model = dw.RealtimeModel("lucy-2.1", width, height, 30)
    started = time.perf_counter()
    session = await dw.RealtimeSession.connect(
        model=model,
        source=frames(width, height),
        prompt="invert",
        backend=emulator,
        transport=transport,
    )
    connected = time.perf_counter() - started
    try:
        async for frame in session.frames():
            if np.allclose(frame.reshape(-1, 3).mean(axis=0), INVERTED, atol=12):
                return connected, time.perf_counter() - started
        raise RuntimeError("the session ended before a transformed frame")
    finally:
        await session.disconnect()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", default="320x192")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    results: dict[str, list[tuple[float, float]]] = {"livekit": [], "webrtc": []}
    with dw.Emulator() as emulator:
        await one(emulator, "livekit", width, height)  # warm-up: imports, codecs
        await one(emulator, "webrtc", width, height)
        for _ in range(args.rounds):
            for transport in results:
                results[transport].append(await one(emulator, transport, width, height))
    print(f"{args.rounds} rounds at {width}x{height}, interleaved (median [min-max], ms)")
    print(f"{'transport':<10} {'connect':>22} {'first frame':>22}")
    for transport, rows in results.items():
        cells = []
        for values in zip(*rows, strict=True):
            ms = [v * 1000 for v in values]
            cells.append(f"{statistics.median(ms):6.0f} [{min(ms):4.0f}-{max(ms):4.0f}]")
        print(f"{transport:<10} {cells[0]:>22} {cells[1]:>22}")
    ratio = statistics.median(r[1] for r in results["livekit"]) / statistics.median(
        r[1] for r in results["webrtc"]
    )
    print(f"first frame, livekit/webrtc: {ratio:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
