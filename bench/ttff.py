"""Time to first transformed frame: the widget's front end vs minimal reference pages, on both
media transports.

Run ``python bench/ttff.py [--runs 20] [--phases] [--each] [--skip-gen-a] [--warm] [--baseline
DIR [--baseline-transport webrtc]] [--chromium /usr/bin/chromium]``. Not part of the test run; it
prints figures and goals, and never fails on them. ``--baseline`` measures another build's
``widget.js`` and assets (e.g. an older commit's) in the same runs, interleaved: on Gen-B, or on
Gen-A with ``--baseline-transport webrtc`` (a build older than Gen-B).

How it measures:

* One local emulator and one static HTTP server on loopback; Debian's Chromium (headless, fake
  media flags) through Playwright. Each run opens a fresh page; runs alternate between the kinds:
  ``widget-b`` (the widget, ``transport="livekit"``), ``reference-b`` (a hand-written
  livekit-client page), ``widget-a`` (``transport="webrtc"``) and ``reference-a`` (a hand-written
  RTCPeerConnection page).
* Widget pages: import the built ``decart_widget/widget/static/widget.js`` (the very bundle the
  kernel ships) and drive it with a small fake anywidget model in JS: ``source="synthetic"``,
  ``prompt="invert"``, ``autostart``. Its ``token_request`` is answered at once with a client token
  minted beforehand, so the kernel round trip and the token HTTP call are left out (as they are
  for the reference pages). Its ``asset_request`` (the media transport's code: ``livekit.js``,
  ``webrtc.js``) is answered with the file fetched from the loopback HTTP server, in one chunk
  with the hash the kernel would send: every run is a fresh page, so every run pays for loading
  the transport, as the first session of a notebook page does (there over the comm).
  ``widget-b-warm`` (``--warm``) is the widget on Gen-B in a page that imported ``livekit.js``
  before the start call (put in the page's cache of assets the way a first session leaves it), as
  a later session of a notebook page starts, and as the Gen-B reference loads livekit-client: the
  widget's own cost without the asset's.
* Gen-A reference: the least a browser needs (docs/protocol.md): a canvas ``captureStream`` of
  the same size and fps, a WebSocket, the ``prompt`` and its ack, an ``RTCPeerConnection`` with
  VP8 preferred, trickled ICE ending with ``candidate:null``.
* Gen-B reference: the same canvas and WebSocket, ``livekit_join`` then the ``prompt``, and on
  ``livekit_room_info`` a livekit-client ``Room`` (npm ``livekit-client``, bundled with esbuild
  for the run) joined with the room token, the canvas track published as Decart's JS SDK does
  (H.264, simulcast, 3.5 Mbps, 30 fps; the widget publishes the same way), and the video of the
  ``inference-server-*`` participant shown.
* Both references' canvases show the widget's own synthetic pattern (``js/src/synthetic.ts``,
  built with esbuild for the run), so every page feeds the encoder, the emulator and the decoder
  the same pictures.
* Every page carries the same host chrome before the start call (a button, a text input, a
  select, a checkbox, text): any notebook page has these, and the first of each in a page costs
  style work once that a widget in a notebook does not pay.
* Time to first frame: from the start call (``initialize``+``render`` for the widget; the first
  line of ``start()`` for a reference) to the first *transformed* frame presented by the output
  <video>: the first ``requestVideoFrameCallback`` whose picture is not flat (the emulator's room
  sends flat grey placeholder frames until the camera reaches its "model"); ``performance.now()``
  in the page.
* Bundle: bytes of the minified ``widget.js`` (and ``widget.css``) every notebook loads, and of
  the assets loaded on demand (``livekit.js``, ``webrtc.js``, ...), raw and gzip -9.
* Kernel memory per live widget: 50 ``RealtimeWidget`` objects (each with its comm) created in
  this process before anything else runs; tracemalloc's net allocation and the RSS growth, / 50.
"""

from __future__ import annotations

import argparse
import functools
import gc
import gzip
import hashlib
import http.server
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import CHROMIUM_ARGS, load_average  # noqa: E402

STATIC = ROOT / "decart_widget" / "widget" / "static"
MODEL = {"name": "lucy-2.1", "width": 1088, "height": 624, "fps": 30}
GOAL_RATIO = 1.1
GOAL_MEDIAN_S = 1.0
GOAL_BUNDLE_KB = 60
#: The kinds of page measured, interleaved: (page, transport) for each.
KINDS = {
    "widget-b": ("widget", "livekit"),
    "widget-b-comm": ("widget-comm", "livekit"),
    "reference-b": ("reference-b", "livekit"),
    "widget-a": ("widget", "webrtc"),
    "reference-a": ("reference-a", "webrtc"),
    "widget-b-warm": ("widget", "livekit"),
    "widget-b-click": ("widget", "livekit"),
    "baseline-b": ("widget-comm", "livekit"),
    "baseline-a": ("widget-comm", "webrtc"),
}
#: widget-b-click: how long the widget shows before Start is pressed (autostart=False, the default)
CLICK_AFTER_MS = 1500
#: Where the page's Jupyter server serves the assets (decart_widget/_asset_route.py), under "/".
SERVED_ASSETS = "decart-widget/assets"
#: The extension's Cache-Control, which the bench's server sends for that path too.
SERVED_CACHE_CONTROL = "private, max-age=31536000, immutable"
#: JupyterLab's and Notebook 7's page config, which tells the widget the server's base URL.
PAGE_CONFIG = '<script id="jupyter-config-data" type="application/json">{"baseUrl": "/"}</script>'

#: The assets loaded on demand, by the name the front end asks for (decart_widget/widget/assets.py).
ASSETS = {
    "webrtc": "webrtc.js",
    "livekit": "livekit.js",
    "sources": "sources.js",
    "frames": "frames.js",
}

#: What any notebook page shows before a widget renders (JupyterLab, Notebook 7 and VS Code draw
#: toolbars, text inputs, selects, buttons and checkboxes): the first of each in a page costs style
#: and layout work once (their built-in shadow trees), which a widget in a notebook never pays but
#: a blank page would charge to it. Both pages carry it, loaded before the start call.
HOST_CHROME = (
    '<div class="host"><button>Run</button> <input type="text" value="notebook.ipynb"> '
    '<select><option>Python 3</option></select> <label><input type="checkbox"> Trust</label> '
    "<span>Idle</span></div>"
)

#: In every page: resolves with the time of the output <video>'s first presented frame that is not
#: flat (the room's placeholder frames are one grey; the inverted pattern is colourful).
FIRST_TRANSFORMED_JS = """
window.firstTransformed = (video) => new Promise((resolve) => {
  const canvas = document.createElement("canvas");
  canvas.width = 32; canvas.height = 18;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const check = () => {
    const now = performance.now();
    ctx.drawImage(video, 0, 0, 32, 18);
    const data = ctx.getImageData(0, 0, 32, 18).data;
    let low = 255, high = 0;
    for (let i = 0; i < data.length; i += 4) {
      const value = Math.max(data[i], data[i + 1], data[i + 2]);
      if (value < low) low = value;
      if (value > high) high = value;
    }
    if (high - low > 40) resolve(now);
    else video.requestVideoFrameCallback(check);
  };
  video.requestVideoFrameCallback(check);
});
"""

WIDGET_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="stylesheet" href="/widget.css">PAGE_CONFIG</head>
<body>HOST_CHROME<div id="cell" style="width:900px"></div>
<script>FIRST_TRANSFORMED</script>
<script type="module">
window.ttff = async (config) => {
  const mod = await import(config.bundle || "/widget.js");
  const def = typeof mod.default === "function" ? await mod.default() : mod.default;
  const state = {
    model: config.model.name, model_spec: config.model, prompt: "invert", enhance: true,
    image: null, source: "synthetic", video: null, device_id: "", camera: {}, mirror: false,
    signaling: "direct", transport: config.transport, resolution: null,
    realtime_url: config.realtimeUrl, ice_servers: [], remote_page_help: "",
    autostart: !config.click,
    note: "", connection_state: "disconnected", generation_seconds: 0, session_id: "",
    last_error: "", last_error_kind: "", stats: {}, queue_position: null, queue_size: null,
  };
  // the kernel's answer to an asset_request (decart_widget/widget/assets.py), from this server
  const sendAsset = async (name) => {
    const asset = config.assets[name];
    if (!asset) {
      emit("msg:custom", { type: "asset_error", name, kind: "invalid_input", message: name }, []);
      return;
    }
    const bytes = await (await fetch(config.assetBase + asset.file)).arrayBuffer();
    if (window.__marks) window.__marks["asset " + name] = performance.now();
    emit("msg:custom", { type: "asset", name, hash: asset.hash, index: 0, count: 1 }, [bytes]);
  };
  const handlers = new Map();
  const emit = (name, ...args) => (handlers.get(name) || []).slice().forEach((h) => h(...args));
  const model = {
    get: (key) => state[key],
    set: (key, value) => {
      if (state[key] === value) return;
      state[key] = value;
      emit(`change:${key}`);
    },
    save_changes: () => {},
    on: (name, handler) => handlers.set(name, [...(handlers.get(name) || []), handler]),
    off: (name, handler) => {
      if (!name) { handlers.clear(); return; }
      handlers.set(name, (handlers.get(name) || []).filter((h) => handler && h !== handler));
    },
    send: (message) => {
      if (message && message.type === "asset_request") sendAsset(message.name);
      if (message && message.type === "token_request") {
        const marks = window.__marks;
        if (marks && !("token asked" in marks)) marks["token asked"] = performance.now();
        setTimeout(() => emit("msg:custom", {
          type: "token", id: message.id, api_key: config.token, realtime_url: config.realtimeUrl,
        }, []), 0);
      }
    },
    widget_manager: {},
  };
  if (config.warm) {
    // a later session of the page: the transport's asset already imported, in the page's cache of
    // assets (asset_loader.ts pageAssets, keyed by name and the build id widget.js carries)
    const asset = config.assets[config.transport];
    const bytes = await (await fetch(config.assetBase + asset.file)).arrayBuffer();
    const url = URL.createObjectURL(new Blob([bytes], { type: "text/javascript" }));
    const holder = globalThis[Symbol.for("decart_widget.assets")] ??= new Map();
    const module = await import(url);
    holder.set(`${config.transport}@${asset.hash.slice(0, 16)}`, Promise.resolve(module));
  }
  const el = document.getElementById("cell");
  const firstFrame = new Promise((resolve) => {
    const watch = () => {
      const video = el.querySelector(".dw-output video");
      if (video) window.firstTransformed(video).then(resolve);
      else requestAnimationFrame(watch);
    };
    watch();
  });
  let t0 = performance.now();
  window.__t0 = t0;
  const signal = new AbortController().signal;
  if (def.initialize) await def.initialize({ model, signal, experimental: {} });
  if (window.__marks) window.__marks.initialized = performance.now();
  await def.render({ model, el, signal, host: {}, experimental: {} });
  if (window.__marks) window.__marks.rendered = performance.now();
  if (config.click) {
    // the widget shown a while before Start is pressed: the clock starts at the click
    await new Promise((resolve) => setTimeout(resolve, config.click));
    t0 = performance.now();
    window.__t0 = t0;
    el.querySelector(".dw-start").click();
  }
  const t1 = await Promise.race([
    firstFrame, new Promise((resolve) => setTimeout(() => resolve(null), 15000)),
  ]);
  return {
    ms: t1 === null ? null : t1 - t0,
    state: state.connection_state,
    error: state.last_error,
  };
};
</script></body></html>
"""

REFERENCE_A_HTML = """<!doctype html>
<html><head><meta charset="utf-8"></head>
<body>HOST_CHROME<video id="out" autoplay muted playsinline width="544" height="312"></video>
<script>FIRST_TRANSFORMED</script>
<script type="module">
import { drawSynthetic } from "/synthetic.js";
window.drawSynthetic = drawSynthetic;
window.pageReady = true;
</script>
<script>
window.ttff = (config) => new Promise((resolve, reject) => {
  const t0 = performance.now();
  window.__t0 = t0;
  const { width, height, fps } = config.model;
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  const canvasContext = canvas.getContext("2d", { alpha: false });
  const draw = () => window.drawSynthetic(canvasContext, (performance.now() - t0) / 1000);
  draw();
  const timer = setInterval(draw, 1000 / fps);
  const track = canvas.captureStream(fps).getVideoTracks()[0];
  const video = document.getElementById("out");
  window.firstTransformed(video).then((t1) => {
    clearInterval(timer);
    resolve({ ms: t1 - t0, state: "generating", error: "" });
  });
  const url = `${config.realtimeUrl}/v1/stream?api_key=${encodeURIComponent(config.token)}` +
    `&model=${encodeURIComponent(config.model.name)}`;
  const ws = new WebSocket(url);
  const send = (message) => ws.send(JSON.stringify(message));
  let pc = null;
  const startPeer = async () => {
    pc = new RTCPeerConnection({ iceServers: [] });
    const transceiver = pc.addTransceiver(track, { direction: "sendrecv" });
    const codecs = RTCRtpReceiver.getCapabilities("video").codecs;
    const vp8 = codecs.filter((c) => c.mimeType.toLowerCase() === "video/vp8");
    transceiver.setCodecPreferences([...vp8, ...codecs.filter((c) => !vp8.includes(c))]);
    pc.onicecandidate = (event) => send({ type: "ice-candidate",
      candidate: event.candidate ? event.candidate.toJSON() : null });
    pc.ontrack = (event) => {
      video.srcObject = event.streams[0] || new MediaStream([event.track]);
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    send({ type: "offer", sdp: pc.localDescription.sdp });
  };
  ws.onopen = () => send({ type: "prompt", prompt: "invert", enhance_prompt: true });
  ws.onerror = () => reject(new Error("websocket error"));
  ws.onmessage = async (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "prompt_ack" && !pc) await startPeer();
    else if (message.type === "answer") {
      await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
    } else if (message.type === "ice-candidate" && message.candidate) {
      await pc.addIceCandidate(message.candidate);
    } else if (message.type === "error") reject(new Error(message.error));
  };
});
</script></body></html>
"""

REFERENCE_B_HTML = """<!doctype html>
<html><head><meta charset="utf-8"></head>
<body>HOST_CHROME<video id="out" autoplay muted playsinline width="544" height="312"></video>
<script>FIRST_TRANSFORMED</script>
<script type="module">
import { drawSynthetic } from "/synthetic.js";
import { Room, RoomEvent, Track } from "/livekit-client.js";
window.drawSynthetic = drawSynthetic;
window.LK = { Room, RoomEvent, Track };
window.pageReady = true;
</script>
<script>
window.ttff = (config) => new Promise((resolve, reject) => {
  const t0 = performance.now();
  window.__t0 = t0;
  const { Room, RoomEvent, Track } = window.LK;
  const { width, height, fps } = config.model;
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const canvasContext = canvas.getContext("2d", { alpha: false });
  const draw = () => window.drawSynthetic(canvasContext, (performance.now() - t0) / 1000);
  draw();
  const timer = setInterval(draw, 1000 / fps);
  const track = canvas.captureStream(fps).getVideoTracks()[0];
  const video = document.getElementById("out");
  window.firstTransformed(video).then((t1) => {
    clearInterval(timer);
    resolve({ ms: t1 - t0, state: "generating", error: "" });
  });
  const url = `${config.realtimeUrl}/v1/stream?api_key=${encodeURIComponent(config.token)}` +
    `&model=${encodeURIComponent(config.model.name)}`;
  const ws = new WebSocket(url);
  const send = (message) => ws.send(JSON.stringify(message));
  const join = async (info) => {
    const room = new Room({ adaptiveStream: false, dynacast: false });
    window.__room = room;
    room.on(RoomEvent.TrackSubscribed, (remote, publication, participant) => {
      const output = participant.identity.startsWith("inference-server-");
      if (output && remote.kind === Track.Kind.Video) {
        video.srcObject = new MediaStream([remote.mediaStreamTrack]);
      }
    });
    await room.connect(info.livekit_url, info.token, { autoSubscribe: true });
    await room.localParticipant.publishTrack(track, {
      source: Track.Source.Camera, videoCodec: "h264", simulcast: true,
      videoEncoding: { maxBitrate: 3500000, maxFramerate: 30 },
    });
  };
  ws.onopen = () => {
    send({ type: "livekit_join", passthrough: false });
    send({ type: "prompt", prompt: "invert", enhance_prompt: true });
  };
  ws.onerror = () => reject(new Error("websocket error"));
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "livekit_room_info") join(message).catch(reject);
    else if (message.type === "error") reject(new Error(message.error));
  };
});
</script></body></html>
"""

PAGES = {
    name: html.replace("HOST_CHROME", HOST_CHROME).replace(
        "FIRST_TRANSFORMED", FIRST_TRANSFORMED_JS
    )
    for name, html in (
        ("widget", WIDGET_HTML.replace("PAGE_CONFIG", PAGE_CONFIG)),
        ("widget-comm", WIDGET_HTML.replace("PAGE_CONFIG", "")),
        ("reference-a", REFERENCE_A_HTML),
        ("reference-b", REFERENCE_B_HTML),
    )
}


#: Injected in both pages before their scripts: timestamps of the handshake's steps, so the runs
#: say where time goes (first occurrence of each step; relative to the page's start call).
PHASES_JS = """
window.__marks = {};
const mark = (name) => { if (!(name in window.__marks)) window.__marks[name] = performance.now(); };
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    mark(String(args[0]).includes("/rtc") ? "rtc socket" : "socket");
    this.addEventListener("open", () => mark("open"));
    this.addEventListener("message", (event) => {
      try { mark("rx " + JSON.parse(event.data).type); } catch (error) {}
    });
  }
  send(data) {
    try { mark("tx " + JSON.parse(data).type); } catch (error) {}
    return super.send(data);
  }
};
const nativeCapture = HTMLCanvasElement.prototype.captureStream;
HTMLCanvasElement.prototype.captureStream = function (...args) {
  mark("capture");
  return nativeCapture.apply(this, args);
};
const NativePeer = window.RTCPeerConnection;
window.RTCPeerConnection = class extends NativePeer {
  constructor(...args) {
    super(...args);
    mark("peer");
    this.addEventListener("connectionstatechange", () => mark("peer " + this.connectionState));
    this.addEventListener("track", () => mark("track"));
  }
};
"""
PHASES = [
    ("initialized", "initialize returned"),
    ("capture", "canvas captured"),
    ("rendered", "render returned"),
    ("token asked", "token requested"),
    ("socket", "socket created"),
    ("open", "socket open"),
    ("rx prompt_ack", "prompt acked"),
    ("asset webrtc", "webrtc.js loaded"),
    ("asset livekit", "livekit.js loaded"),
    ("rx livekit_room_info", "room info received"),
    ("rtc socket", "room signal socket"),
    ("peer", "peer created"),
    ("tx offer", "offer sent"),
    ("rx answer", "answer received"),
    ("track", "remote track"),
    ("peer connected", "peer connected"),
    ("rx generation_started", "generation_started"),
]


# ---- bundle and kernel memory ------------------------------------------------------------------


def bundle_sizes() -> list[tuple[str, int, int]]:
    """(file, raw bytes, gzip -9 bytes) of widget.js, widget.css and each on-demand asset."""
    out = []
    for name in ("widget.js", "widget.css", *ASSETS.values()):
        path = STATIC / name
        if path.exists():
            data = path.read_bytes()
            out.append((name, len(data), len(gzip.compress(data, compresslevel=9))))
    return out


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def widget_memory(count: int = 50) -> tuple[float, float]:
    """(tracemalloc KiB, RSS KiB) per RealtimeWidget, over ``count`` live ones."""
    import decart_widget as dw

    backend = dw.Decart(
        api_key="dct_bench", api_url="http://127.0.0.1:9", realtime_url="ws://127.0.0.1:9"
    )
    keep = [dw.RealtimeWidget(prompt="warm-up", source="synthetic", backend=backend)]
    gc.collect()
    rss0 = _rss_bytes()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    keep += [
        dw.RealtimeWidget(prompt=f"style {i}", source="synthetic", backend=backend)
        for i in range(count)
    ]
    gc.collect()
    after = tracemalloc.take_snapshot()
    rss1 = _rss_bytes()
    tracemalloc.stop()
    traced = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    for widget in keep:
        widget.close()
    return traced / count / 1024, (rss1 - rss0) / count / 1024


# ---- time to first frame -----------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        if self.path.startswith(f"/{SERVED_ASSETS}/"):  # as the server extension answers
            self.send_header("Cache-Control", SERVED_CACHE_CONTROL)
        super().end_headers()

    def guess_type(self, path: Any) -> str:
        return "text/javascript" if str(path).endswith(".js") else super().guess_type(path)


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="ttff-http").start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def esbuild(args: list[str], stdin: str | None = None) -> None:
    subprocess.run(
        [str(ROOT / "js" / "node_modules" / ".bin" / "esbuild"), *args],
        cwd=ROOT / "js",
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


def build_pattern(out: Path) -> None:
    """The widget's synthetic pattern (js/src/synthetic.ts) as a module for the references."""
    esbuild(["src/synthetic.ts", "--format=esm", "--minify", f"--outfile={out}"])


def build_livekit_client(out: Path) -> None:
    """npm livekit-client as one ES module for the Gen-B reference page."""
    esbuild(
        ["--bundle", "--format=esm", "--minify", f"--outfile={out}"],
        stdin='export { Room, RoomEvent, Track } from "livekit-client";',
    )


def asset_table(static: Path) -> dict[str, dict[str, str]]:
    """What the fake kernel of the widget page answers an asset_request with: file and hash."""
    table = {}
    for name, file in ASSETS.items():
        path = static / file
        if path.exists():
            table[name] = {"file": file, "hash": hashlib.sha256(path.read_bytes()).hexdigest()}
    return table


def measure(
    runs: int,
    chromium: str,
    kinds: list[str],
    phases: dict[str, dict[str, list[float]]] | None = None,
    baseline: Path | None = None,
    baseline_kind: str = "baseline-b",
) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    import decart_widget as dw

    if baseline:
        kinds = [*kinds, baseline_kind]
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="ttff-") as tmp, dw.Emulator() as emu:
        site = Path(tmp)
        for name in ("widget.js", "widget.css", *ASSETS.values()):
            if (STATIC / name).exists():
                (site / name).write_bytes((STATIC / name).read_bytes())
        for file in ASSETS.values():  # where the server extension serves them, by build id
            if (STATIC / file).exists():
                data = (STATIC / file).read_bytes()
                build_id = hashlib.sha256(data).hexdigest()[:16]
                served = site / SERVED_ASSETS / build_id / file
                served.parent.mkdir(parents=True, exist_ok=True)
                served.write_bytes(data)
        if baseline:
            (site / "baseline").mkdir()
            for name in ("widget.js", *ASSETS.values()):
                if (baseline / name).exists():
                    (site / "baseline" / name).write_bytes((baseline / name).read_bytes())
        build_pattern(site / "synthetic.js")
        build_livekit_client(site / "livekit-client.js")
        for name, html in PAGES.items():
            (site / f"{name}.html").write_text(html)
        server, base = serve(site)
        minter = dw.TokenMinter(emu)
        assets = {"": asset_table(STATIC), "baseline/": asset_table(baseline) if baseline else {}}
        try:
            with sync_playwright() as playwright:
                # a profile on disk, as a user's browser has: Chromium keeps its HTTP cache and
                # V8's code cache there (an incognito context has no code cache)
                context = playwright.chromium.launch_persistent_context(
                    str(site / "profile"),
                    executable_path=chromium,
                    args=CHROMIUM_ARGS,
                    viewport={"width": 1280, "height": 900},
                )
                if phases is not None:
                    context.add_init_script(PHASES_JS)
                # one unmeasured run each: Chromium's first WebRTC / codec set-up is not the app's
                plan = [(kind, True) for kind in kinds]
                for _ in range(runs):
                    plan += [(kind, False) for kind in kinds]
                for kind, warm_up in plan:
                    page_name, transport = KINDS.get(kind, ("widget", "livekit"))
                    prefix = "baseline/" if kind.startswith("baseline") else ""
                    token = minter.mint(expires_in=120, allowed_models=[MODEL["name"]], reuse=False)
                    page = context.new_page()
                    page.goto(f"{base}/{page_name}.html")
                    ready = (
                        "true" if page_name.startswith("widget") else "window.pageReady === true"
                    )
                    page.wait_for_function(f"typeof window.ttff === 'function' && {ready}")
                    config = {
                        "token": token.api_key,
                        "realtimeUrl": emu.realtime_url,
                        "model": MODEL,
                        "transport": transport,
                        "bundle": f"/{prefix}widget.js",
                        "assetBase": f"/{prefix}",
                        "assets": assets[prefix],
                        "warm": kind.endswith("-warm"),
                        "click": CLICK_AFTER_MS if kind.endswith("-click") else 0,
                    }
                    result = page.evaluate("(config) => window.ttff(config)", config)
                    marks = page.evaluate(
                        "() => Object.fromEntries(Object.entries(window.__marks || {})"
                        ".map(([k, v]) => [k, v - window.__t0]))"
                    )
                    page.close()  # ends the session: the next run starts from an idle emulator
                    n = len(emu.sessions)
                    emu.wait_until(lambda n=n: all(not s.live for s in emu.sessions[:n]), 10)
                    if result["ms"] is None:
                        print(f"  {kind}: no frame in 15 s ({result['state']}, {result['error']})")
                        continue
                    if not warm_up:
                        results[kind].append(result["ms"] / 1000)
                        if phases is not None:
                            for name, ms in marks.items():
                                phases[kind].setdefault(name, []).append(ms / 1000)
                context.close()
        finally:
            server.shutdown()
    return results


def _ratio_line(label: str, results: dict[str, list[float]], top: str, bottom: str) -> None:
    if results.get(top) and results.get(bottom):
        ratio = statistics.median(results[top]) / statistics.median(results[bottom])
        print(f"  {label:<28} {ratio:.2f}", end="")
        if top in ("widget-b", "widget-a") and bottom.startswith("reference"):
            print(f"  (goal <= {GOAL_RATIO}: {'met' if ratio <= GOAL_RATIO else 'NOT met'})")
        else:
            print()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--phases", action="store_true", help="also print the median time of each handshake step"
    )
    parser.add_argument("--each", action="store_true", help="also print every run's time")
    parser.add_argument(
        "--skip-gen-a",
        action="store_true",
        help="measure Gen-B (LiveKit, the default transport) only",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="also measure widget-b-warm: the widget on Gen-B with livekit.js already imported by "
        "the page (a later session of a notebook page), to see the widget's cost without it",
    )
    parser.add_argument(
        "--chromium", default=os.environ.get("DECART_WIDGET_CHROMIUM", "/usr/bin/chromium")
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a directory holding another build's widget.js and assets (e.g. of an older "
        "commit): measured in the same runs, interleaved, and compared",
    )
    parser.add_argument(
        "--baseline-transport",
        choices=("livekit", "webrtc"),
        default="livekit",
        help="the transport the baseline is measured on (webrtc for a build older than Gen-B)",
    )
    args = parser.parse_args(argv)

    print(
        "bundle (minified): widget.js and widget.css load with every notebook, the rest on demand"
    )
    for name, raw, packed in bundle_sizes():
        print(f"  {name:<11} {raw / 1024:6.1f} KB raw  {packed / 1024:6.1f} KB gzip")
    js = next((raw for name, raw, _ in bundle_sizes() if name == "widget.js"), 0)
    print(
        f"  goal: widget.js < {GOAL_BUNDLE_KB} KB minified -> "
        f"{'met' if js < GOAL_BUNDLE_KB * 1024 else 'NOT met'}"
    )

    traced, rss = widget_memory()
    print("kernel memory per live RealtimeWidget (50 widgets, comm included):")
    print(f"  tracemalloc {traced:.1f} KB   RSS {rss:.1f} KB")

    kinds = ["widget-b", "widget-b-comm", "widget-b-click", "reference-b"]
    kinds += [] if args.skip_gen_a else ["widget-a", "reference-a"]
    kinds += ["widget-b-warm"] if args.warm else []
    print(f"time to first transformed frame, {args.runs} runs each (Chromium, loopback emulator):")
    print(f"  load average at the start: {load_average()}")
    phases: dict[str, dict[str, list[float]]] | None = None
    baseline_kind = "baseline-b" if args.baseline_transport == "livekit" else "baseline-a"
    if args.phases:
        phases = {kind: {} for kind in [*kinds, baseline_kind]}
    results = measure(args.runs, args.chromium, kinds, phases, args.baseline, baseline_kind)
    print(f"  load average at the end:   {load_average()}  (other work inflates the figures)")
    for kind, values in results.items():
        if values:
            print(
                f"  {kind:<14} median {statistics.median(values) * 1000:6.0f} ms   "
                f"min {min(values) * 1000:5.0f}   max {max(values) * 1000:5.0f}   "
                f"(n={len(values)})"
            )
            if args.each:
                print("    each: " + " ".join(f"{v * 1000:.0f}" for v in values))
    _ratio_line("widget-b / reference-b", results, "widget-b", "reference-b")
    _ratio_line("widget-b-comm / reference-b", results, "widget-b-comm", "reference-b")
    _ratio_line("widget-b-click / reference-b", results, "widget-b-click", "reference-b")
    _ratio_line("widget-b-warm / reference-b", results, "widget-b-warm", "reference-b")
    _ratio_line("widget-a / reference-a", results, "widget-a", "reference-a")
    _ratio_line("widget-b / widget-a", results, "widget-b", "widget-a")
    _ratio_line("reference-b / reference-a", results, "reference-b", "reference-a")
    for kind in ("widget-b", "widget-a"):
        if results.get(kind):
            median = statistics.median(results[kind])
            print(
                f"  {kind} median {median:.2f} s  (goal < {GOAL_MEDIAN_S} s: "
                f"{'met' if median < GOAL_MEDIAN_S else 'NOT met'})"
            )
    for ours, theirs in (("widget-b", "baseline-b"), ("widget-a", "baseline-a")):
        if results.get(theirs) and results.get(ours):
            delta = statistics.median(results[ours]) - statistics.median(results[theirs])
            print(f"  {ours} - {theirs} {delta * 1000:+.0f} ms")
            _ratio_line(f"{ours} / {theirs}", results, ours, theirs)
    if phases is not None:
        shown = [kind for kind in results if results[kind]]
        print(f"  median ms from the start call ({' / '.join(shown)}):")
        for key, label in [*PHASES, ("", "first frame")]:
            cells = []
            for kind in shown:
                values = phases[kind].get(key) if key else results[kind]
                cells.append(f"{statistics.median(values) * 1000:5.0f}" if values else "    -")
            print(f"    {label:<19} {' / '.join(cells)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
