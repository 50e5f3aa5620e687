"""Simulcast offers, narrowed to one layer: the full-size one.

LiveKit's clients publish cameras with simulcast: the video section of the offer lists RIDs
(``a=rid:q send``, ``a=rid:h send``, ``a=rid:f send``) and ``a=simulcast:send q;h;f`` (the
browser client lowest first, the Rust-based clients ``f;h;q``). aiortc receives one stream per
section and knows nothing of RIDs, and an answer that simply drops the simulcast lines makes a
browser fall back to its *first* encoding, the smallest one. So the offer handed to aiortc is
stripped of its RID and simulcast lines, and the answer gets back one accepted layer, the
full-size one (by LiveKit's layer names, ``f`` > ``h`` > ``q``: a two-layer publication is
``h;q``), with ``a=rid:<layer> recv``,
``a=simulcast:recv <layer>`` and the RID header extension of the offer: the answerer may accept
a subset of the offered layers (RFC 8853), and the client then sends that single layer, with
the track's full size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RID_EXTENSION = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
#: LiveKit's layer names, largest first: full, half and quarter size (two layers are "h;q").
LIVEKIT_RIDS = ("f", "h", "q")


def _sections(sdp: str) -> list[list[str]]:
    """The session part and each media section, as lists of lines."""
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def _join(sections: list[list[str]]) -> str:
    return "\r\n".join(line for section in sections for line in section) + "\r\n"


def _mid(section: list[str]) -> str | None:
    for line in section:
        if line.startswith("a=mid:"):
            return line[len("a=mid:") :].strip()
    return None


@dataclass
class NarrowedOffer:
    """An offer without simulcast, and how to put the chosen layer back into the answer."""

    sdp: str
    layer: str | None = None
    _restore: dict[str, list[str]] = field(default_factory=dict)

    def restore(self, answer_sdp: str) -> str:
        """The answer with the accepted layer of each simulcast section."""
        if not self._restore:
            return answer_sdp
        sections = _sections(answer_sdp)
        for section in sections[1:]:
            extra = self._restore.get(_mid(section) or "")
            if extra:
                section.extend(extra)
        return _join(sections)


def _layers(simulcast_line: str) -> list[str]:
    # a=simulcast:send q;h;f  (alternatives "a,b" and paused "~x" possible)
    parts = simulcast_line.split(":", 1)[1].split()
    if len(parts) < 2 or parts[0] != "send":
        return []
    return [alt.split(",")[0].lstrip("~") for alt in parts[1].split(";") if alt]


def _choose(layers: list[str], full: str | None) -> str | None:
    if full in layers:
        return full
    for name in LIVEKIT_RIDS:
        if name in layers:
            return name
    return layers[-1] if layers else None


def narrow_offer(
    sdp: str, full_layers: dict[str, str] | None = None, full_layer: str | None = None
) -> NarrowedOffer:
    """Strip simulcast from every video section of an offer; remember the layer to accept.

    ``full_layers`` maps a track id (``a=msid``) to the RID of its full-size layer, as the
    track's ``add_track`` described it; ``full_layer`` is the latest such RID. Without either
    (LiveKit's clients leave the layers' RIDs empty), the largest by LiveKit's names (`f`, then
    `h`, then `q`), else the last one listed.
    """
    sections = _sections(sdp)
    narrowed = NarrowedOffer(sdp=sdp)
    changed = False
    for section in sections[1:]:
        simulcast = next((s for s in section if s.startswith("a=simulcast:")), None)
        if simulcast is None or not section[0].startswith("m=video"):
            continue
        track = next((s.split()[-1] for s in section if s.startswith("a=msid:")), "")
        layer = _choose(_layers(simulcast), (full_layers or {}).get(track, full_layer))
        extmap = next(
            (s for s in section if s.startswith("a=extmap:") and RID_EXTENSION in s), None
        )
        section[:] = [s for s in section if not s.startswith(("a=rid:", "a=simulcast:"))]
        changed = True
        mid = _mid(section)
        if layer is None or mid is None:
            continue
        narrowed.layer = layer
        extra = [f"a=rid:{layer} recv", f"a=simulcast:recv {layer}"]
        if extmap is not None:
            extra.insert(0, extmap.split(" ")[0] + " " + RID_EXTENSION)
        narrowed._restore[mid] = extra
    if changed:
        narrowed.sdp = _join(sections)
    return narrowed
