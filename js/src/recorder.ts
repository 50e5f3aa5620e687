// Recordings for the kernel: `await w.record()` and `w.start_recording()` (docs/widget.md,
// "Recording"); part of the frames asset (frames_asset.ts), never of widget.js.
//
// The kernel asks with `record_start {id, which, fps, seconds, mimes, max_bytes, timeslice_ms,
// bitrate, timeout_ms}`. This part waits for the asked streams' first frames, then draws them
// (the output, the input, or both side by side) onto a canvas at `fps`, and a MediaRecorder
// encodes the canvas's stream. A canvas, not the streams themselves: MediaRecorder stops when its
// stream's tracks change, and a reconnect replaces them; on the canvas a reconnect is only a few
// black frames (a stream whose track is gone, muted or replaced is drawn black), the file goes
// on, and the frame rate is the one asked, whatever the service sends.
//
// The file travels as it is made: MediaRecorder hands a chunk every `timeslice_ms`, each goes to
// the kernel as `record_chunk {id, page, seq}` with the bytes as one binary buffer (a comm message
// stays far under the ~10 MB a Jupyter message may carry), in order. `record_started {id, page,
// width, height, mime}` comes first; `record_end {id, page, reason, chunks, bytes}` last, once the
// last chunk is sent. Reasons: "stopped" (the kernel's `record_stop {id}`), "seconds",
// "too_large" (`max_bytes` reached: the recorder stops, its last chunk closes the file),
// "session" (the widget stopped), "failed" (with `message`). A request that cannot start is
// answered `record_error {id, page, kind, message}`: not_started, hidden, busy, unsupported,
// timeout. Every page showing the widget answers; the kernel keeps the first page's recording and
// stops the others with `record_stop {id, page}` (decart_widget/widget/_recording.py).

import type { Clock } from "./core_loop";
import { debug } from "./log";
import type { KernelChannel } from "./transports";

type Side = "input" | "output";

export interface RecorderHost {
  clock: Clock;
  kernel: KernelChannel;
  stream(which: Side): MediaStream | null;
  active(): boolean;
  shown?(): boolean;
  subscribe(listener: () => void): () => void;
}

/** How often a start checks whether the asked streams have decoded a frame yet. */
const POLL_MS = 50;
/** Upper bound of the wait for first frames, whatever the kernel asks. */
export const MAX_START_WAIT_MS = 600_000;
const MAX_FPS = 60;

interface Request {
  id: number;
  sides: Side[];
  fps: number;
  seconds: number | null;
  mimes: string[];
  maxBytes: number | null;
  timesliceMs: number;
  bitrate: number;
  timeoutMs: number;
}

export class RecordRefused extends Error {
  constructor(
    readonly kind: "not_started" | "hidden" | "busy" | "unsupported" | "timeout",
    message: string,
  ) {
    super(message);
  }
}

const num = (value: unknown, fallback: number): number => (typeof value === "number" && Number.isFinite(value) ? value : fallback);
const even = (value: number): number => Math.max(2, Math.round(value / 2) * 2);

function parse(message: Record<string, unknown>): Request {
  const which = message.which;
  return {
    id: message.id as number,
    sides: which === "both" ? ["input", "output"] : [which === "input" ? "input" : "output"],
    fps: Math.min(Math.max(num(message.fps, 30), 1), MAX_FPS),
    seconds: typeof message.seconds === "number" && message.seconds > 0 ? message.seconds : null,
    mimes: Array.isArray(message.mimes) ? message.mimes.filter((m): m is string => typeof m === "string") : [],
    maxBytes: typeof message.max_bytes === "number" ? message.max_bytes : null,
    timesliceMs: Math.max(100, num(message.timeslice_ms, 1000)),
    bitrate: Math.max(100_000, num(message.bitrate, 2_500_000)),
    timeoutMs: Math.min(Math.max(num(message.timeout_ms, 30_000), 0), MAX_START_WAIT_MS),
  };
}

/** One stream as the recording sees it: a detached, muted <video> following the widget's stream. */
class Pane {
  readonly video = document.createElement("video");
  private stream: MediaStream | null = null;

  constructor() {
    this.video.muted = true;
    this.video.playsInline = true;
  }

  follow(stream: MediaStream | null): void {
    if (stream === this.stream) return;
    this.stream = stream;
    this.video.srcObject = stream;
    if (stream) void this.video.play().catch(() => undefined); // muted: allowed without a gesture
  }

  /** Whether the video holds a current picture of a live track (else the pane is drawn black). */
  fresh(): boolean {
    const track = this.stream?.getVideoTracks()[0];
    return (
      !!track &&
      track.readyState === "live" &&
      !track.muted &&
      this.video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA &&
      this.video.videoWidth > 0
    );
  }

  dispose(): void {
    this.follow(null);
  }
}

/** Where a pane goes on the canvas. */
interface Box {
  pane: Pane;
  left: number;
  width: number;
  height: number;
}

class Take {
  readonly page: string;
  private readonly boxes: Box[];
  private readonly canvas = document.createElement("canvas");
  private readonly context: CanvasRenderingContext2D;
  private readonly track: CanvasCaptureMediaStreamTrack;
  private readonly recorder: MediaRecorder;
  private sending: Promise<void> = Promise.resolve();
  private seq = 0;
  private bytes = 0;
  private reason = "stopped";
  private failure = "";
  private tick: unknown = null;
  private limit: unknown = null;
  private ended = false;
  /** frames drawn and handed to the recorder */
  private frames = 0;

  constructor(
    private readonly host: RecorderHost,
    readonly request: Request,
    private readonly panes: Map<Side, Pane>,
    page: string,
    mime: string,
    private readonly done: () => void,
  ) {
    this.page = page;
    // the picture: the output at its size, or the input scaled to the output's height on its left
    const sized = request.sides.map((side) => {
      const pane = panes.get(side)!;
      return { pane, width: pane.video.videoWidth, height: pane.video.videoHeight };
    });
    const height = even(sized[sized.length - 1]!.height);
    let left = 0;
    this.boxes = sized.map(({ pane, width, height: own }) => {
      const box = { pane, left, width: even((width * height) / own), height };
      left += box.width;
      return box;
    });
    this.canvas.width = left;
    this.canvas.height = height;
    const context = this.canvas.getContext("2d");
    if (!context) throw new RecordRefused("unsupported", "The page could not make a 2D canvas to record on.");
    this.context = context;
    this.draw();
    const stream = this.canvas.captureStream(0);
    this.track = stream.getVideoTracks()[0] as CanvasCaptureMediaStreamTrack;
    this.recorder = new MediaRecorder(stream, { mimeType: mime, videoBitsPerSecond: request.bitrate });
    this.recorder.ondataavailable = (event) => {
      if (event.data.size > 0) this.send(event.data);
    };
    this.recorder.onerror = (event) => {
      const error = (event as Event & { error?: Error }).error;
      this.stop("failed", `The browser's recorder failed: ${error?.message ?? "unknown error"}`);
    };
    this.recorder.onstop = () => void this.finish();
    host.kernel.send({ type: "record_started", id: request.id, page, width: left, height, mime });
    this.recorder.start(request.timesliceMs);
    const started = host.clock.now();
    const next = (): void => {
      if (this.ended) return;
      this.draw();
      this.track.requestFrame();
      this.frames++;
      // drift-free: each frame at its slot since the start (the clock counts seconds)
      const due = started + this.frames / request.fps;
      this.tick = host.clock.setTimeout(next, Math.max(0, (due - host.clock.now()) * 1000));
    };
    next(); // the first frame at once: a recorder whose track never delivered one writes nothing
    if (request.seconds !== null) {
      this.limit = host.clock.setTimeout(() => this.stop("seconds"), request.seconds * 1000);
    }
  }

  get dimensions(): [number, number] {
    return [this.canvas.width, this.canvas.height];
  }

  /** End the take; its last chunk and `record_end` follow. */
  stop(reason: string, message = ""): void {
    if (this.ended) return;
    this.ended = true;
    this.reason = reason;
    this.failure = message;
    this.host.clock.clearTimeout(this.tick);
    this.host.clock.clearTimeout(this.limit);
    if (this.recorder.state !== "inactive") {
      // a last frame, so the final chunk ends on the current picture
      this.draw();
      this.track.requestFrame();
      this.recorder.stop();
    } else void this.finish();
  }

  private draw(): void {
    const { context } = this;
    context.fillStyle = "#000";
    context.fillRect(0, 0, this.canvas.width, this.canvas.height);
    for (const { pane, left, width, height } of this.boxes) {
      if (!pane.fresh()) continue; // a gap (reconnecting, replaced stream) is black
      const { videoWidth, videoHeight } = pane.video;
      // fit, keeping the picture's shape (a stream may come back at another size)
      const scale = Math.min(width / videoWidth, height / videoHeight);
      const w = videoWidth * scale;
      const h = videoHeight * scale;
      context.drawImage(pane.video, left + (width - w) / 2, (height - h) / 2, w, h);
    }
  }

  private send(data: Blob): void {
    const { id } = this.request;
    this.sending = this.sending.then(async () => {
      let buffer: ArrayBuffer;
      try {
        buffer = await data.arrayBuffer();
      } catch (error) {
        this.stop("failed", `A recorded chunk could not be read: ${(error as Error)?.message ?? error}`);
        return;
      }
      this.host.kernel.send({ type: "record_chunk", id, page: this.page, seq: this.seq++ }, [buffer]);
      this.bytes += buffer.byteLength;
      const { maxBytes } = this.request;
      if (maxBytes !== null && this.bytes >= maxBytes) this.stop("too_large");
    });
  }

  private async finish(): Promise<void> {
    await this.sending;
    await Promise.resolve(); // the final dataavailable precedes stop; its send is chained by now
    await this.sending;
    const empty = this.bytes === 0 && this.reason !== "failed";
    this.host.kernel.send({
      type: "record_end",
      id: this.request.id,
      page: this.page,
      reason: empty ? "failed" : this.reason,
      message: empty ? "The browser's recorder produced no data." : this.failure,
      chunks: this.seq,
      bytes: this.bytes,
      frames: this.frames,
    });
    this.done();
  }
}

export class Recorder {
  /** This page's name in the kernel's eyes: every page showing the widget answers a request. */
  readonly page = Math.random().toString(36).slice(2, 10);
  private readonly panes = new Map<Side, Pane>();
  private take: Take | null = null;
  private starting: AbortController | null = null;
  private startingId = -1;
  private readonly stops: (() => void)[];
  private disposed = false;

  constructor(private readonly host: RecorderHost) {
    this.stops = [host.kernel.listen((content) => this.onMessage(content)), host.subscribe(() => this.changed())];
  }

  dispose(): void {
    this.disposed = true;
    this.starting?.abort();
    this.take?.stop("failed", "The widget was closed during the recording.");
    for (const stop of this.stops) stop();
    for (const pane of this.panes.values()) pane.dispose();
    this.panes.clear();
  }

  private onMessage(content: unknown): void {
    if (!content || typeof content !== "object") return;
    const message = content as Record<string, unknown>;
    if (typeof message.id !== "number") return;
    if (message.type === "record_start") void this.start(parse(message));
    else if (message.type === "record_stop" && (message.page === undefined || message.page === this.page)) {
      if (this.take?.request.id === message.id) this.take.stop("stopped");
      else if (this.starting && this.startingId === message.id) this.starting.abort();
    }
  }

  private async start(request: Request): Promise<void> {
    try {
      if (this.take || this.starting) throw new RecordRefused("busy", "This page is recording the widget already.");
      if (!this.host.active()) throw new RecordRefused("not_started", "The widget is not started: call w.start() (or press Start) first.");
      if (this.host.shown?.() === false || document.visibilityState === "hidden") {
        throw new RecordRefused("hidden", "No view of the widget is visible in the page (its output was cleared, or the tab is hidden): display it again.");
      }
      const mime = request.mimes.find((candidate) => typeof MediaRecorder !== "undefined" && MediaRecorder.isTypeSupported(candidate));
      if (!mime) {
        throw new RecordRefused("unsupported", `This browser cannot record ${request.mimes[0] ?? "video"}: use a .webm file.`);
      }
      const abort = new AbortController();
      this.starting = abort;
      this.startingId = request.id;
      for (const side of request.sides) if (!this.panes.has(side)) this.panes.set(side, new Pane());
      this.changed();
      await this.firstFrames(request, abort.signal);
      this.starting = null;
      if (this.disposed) return;
      this.take = new Take(this.host, request, this.panes, this.page, mime, () => {
        this.take = null;
      });
    } catch (error) {
      this.starting = null;
      const refused =
        error instanceof RecordRefused ? error : new RecordRefused("unsupported", `The recording could not start: ${(error as Error)?.message ?? error}`);
      debug("record request refused:", refused.kind, refused.message);
      if (!this.disposed) {
        this.host.kernel.send({ type: "record_error", id: request.id, page: this.page, kind: refused.kind, message: refused.message });
      }
    }
  }

  private firstFrames(request: Request, signal: AbortSignal): Promise<void> {
    const deadline = this.host.clock.now() + request.timeoutMs / 1000;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (signal.aborted) reject(new RecordRefused("timeout", "The recording was stopped before it started."));
        else if (!this.host.active()) reject(new RecordRefused("not_started", "The widget stopped before the recording started."));
        else if (request.sides.every((side) => this.panes.get(side)?.fresh())) resolve();
        else if (this.host.clock.now() > deadline) {
          reject(new RecordRefused("timeout", `No ${request.sides.join(" and ")} frame within ${request.timeoutMs / 1000} s.`));
        } else this.host.clock.setTimeout(check, POLL_MS);
      };
      check();
    });
  }

  /** Streams or the session changed: panes follow the streams; a stopped widget ends the take. */
  private changed(): void {
    for (const [side, pane] of this.panes) pane.follow(this.host.stream(side));
    if (this.take && !this.host.active()) this.take.stop("session", "The widget stopped during the recording.");
  }
}
