"""The codec a publication asked for, put first in the client's offer before aiortc answers.

LiveKit's clients name a track's codec in ``add_track`` (``simulcast_codecs[].codec``, e.g.
``h264``) but leave their offer in the browser's default order (VP8 first): LiveKit's server
answers with the requested codec. aiortc answers in the offer's order (the order of its
``a=rtpmap`` lines), so in each sending video section the requested codec and its RTX move
first, in the m= line and among the rtpmap lines, for the track the section carries (matched by
its ``a=msid`` track id, which is the request's ``cid``; the latest request when none matches).
A codec aiortc cannot use falls back to the next one (VP8).
"""

from __future__ import annotations

import re


def _codec_name(mime: str) -> str:
    return mime.split("/")[-1].lower()


def prefer_codecs(sdp: str, by_track: dict[str, str], default: str | None) -> str:
    """The offer with each sending video section's requested codec first."""
    if not by_track and default is None:
        return sdp
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    for section in sections[1:]:
        if not section[0].startswith("m=video") or not any(
            line in ("a=sendonly", "a=sendrecv") for line in section
        ):
            continue
        track = next((line.split()[-1] for line in section if line.startswith("a=msid:")), None)
        wanted = by_track.get(track or "", default)
        if wanted is not None:
            _reorder(section, _codec_name(wanted))
    return "\r\n".join(line for section in sections for line in section) + "\r\n"


def _reorder(section: list[str], codec: str) -> None:
    # aiortc reads codecs in the order of the rtpmap lines, browsers in the m= line's: both.
    head, payloads = section[0].split()[:3], section[0].split()[3:]
    names: dict[str, str] = {}
    rtx_of: dict[str, str] = {}
    for line in section:
        if match := re.match(r"a=rtpmap:(\d+) ([^/]+)/", line):
            names[match.group(1)] = match.group(2).lower()
        if match := re.match(r"a=fmtp:(\d+) apt=(\d+)", line):
            rtx_of[match.group(1)] = match.group(2)
    chosen = {pt for pt in payloads if names.get(pt) == codec}
    if not chosen:
        return
    chosen |= {pt for pt, base in rtx_of.items() if base in chosen}
    order = [pt for pt in payloads if pt in chosen] + [pt for pt in payloads if pt not in chosen]
    section[0] = " ".join(head + order)
    slots = [i for i, line in enumerate(section) if line.startswith("a=rtpmap:")]
    rank = {pt: n for n, pt in enumerate(order)}
    lines = sorted(
        (section[i] for i in slots),
        key=lambda line: rank.get(line[len("a=rtpmap:") :].split()[0], len(rank)),
    )
    for i, line in zip(slots, lines, strict=True):
        section[i] = line
