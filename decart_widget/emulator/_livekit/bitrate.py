"""A bitrate floor in the publisher answer, so a browser sends its camera at full size.

Chrome sizes its encoder to its bandwidth estimate. aiortc gives it only REMB feedback (no
transport-wide congestion control), and the estimate of a loopback link starts near 250 kbps
and, with the easy-to-compress pictures tests send, never climbs: Chrome then halves the
resolution ("qualityLimitationReason: bandwidth"). LiveKit's server probes the link up; here
the answer's video codecs carry ``x-google-min-bitrate``/``x-google-start-bitrate`` (kbps),
which libwebrtc reads from the remote description of the codec it sends, and the estimate
starts and stays high enough for the full size of the models (1088x624, 1280x720).
"""

from __future__ import annotations

import re

MIN_KBPS = 1500
START_KBPS = 2500
_FLOOR = f"x-google-min-bitrate={MIN_KBPS};x-google-start-bitrate={START_KBPS}"
_VIDEO_CODECS = ("h264", "vp8", "vp9", "av1")


def with_bitrate_floor(sdp: str) -> str:
    """The SDP with the floor on every video codec of every video section."""
    out: list[str] = []
    section: list[str] = []

    def flush() -> None:
        out.extend(
            _floor_section(section) if section and section[0].startswith("m=video") else section
        )
        section.clear()

    for line in sdp.splitlines():
        if line.startswith("m="):
            flush()
        section.append(line)
    flush()
    return "\r\n".join(out) + "\r\n"


def _floor_section(lines: list[str]) -> list[str]:
    payload_types = []
    for line in lines:
        match = re.match(r"a=rtpmap:(\d+) ([^/]+)/", line)
        if match and match.group(2).lower() in _VIDEO_CODECS:
            payload_types.append(match.group(1))
    result = []
    with_fmtp = set()
    for line in lines:
        match = re.match(r"a=fmtp:(\d+) ", line)
        if match and match.group(1) in payload_types:
            with_fmtp.add(match.group(1))
            line = f"{line};{_FLOOR}"
        result.append(line)
    for payload_type in payload_types:
        if payload_type not in with_fmtp:
            index = next(
                i for i, line in enumerate(result) if line.startswith(f"a=rtpmap:{payload_type} ")
            )
            result.insert(index + 1, f"a=fmtp:{payload_type} {_FLOOR}")
    return result
