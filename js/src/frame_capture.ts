// Frames for the kernel: `await w.snapshot()` and `w.on_frame()` / `w.frames()` (docs/widget.md,
// "Frames in Python"). The kernel asks
// with `frame_request`; this part waits until the asked stream (the camera's input or the service's
// output) has a decoded frame, up to the request's timeout, and answers with its pixels as RGB in
// one binary buffer (`frame`), or with a typed refusal (`frame_error`: not_started, stopped,
// timeout, hidden: no view of the widget is in the page, its output cell was cleared or closed). The answer is the kernel request/response pattern of kernel_rpc.ts turned around: the
// kernel asks, the page answers the same id. Every page showing the widget has its own controller
// and answers; the kernel takes the first answer (decart_widget/widget/_frames.py).
//
// Streams: `frame_stream {id, which, fps}` (fps 0 ends it) makes this part read a frame every
// 1/fps s and send it as `frame {stream: id, ...}`. At most STREAM_WINDOW frames are unanswered at
// a time: the kernel sends `frame_ack {stream}` once it has handled one, and ticks that find the
// window full are skipped. So a slow kernel loses frames; nothing queues up in between.

import type { Clock } from "./core_loop";
import { debug } from "./log";
import type { KernelChannel } from "./transports";

export type Which = "input" | "output";

/** One video frame: `rgb` holds width * height * 3 bytes, row by row. */
export interface Frame {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/** Reads frames of one stream; `read` waits for a decoded frame (rejects once `signal` aborts). */
export interface FrameReader {
  read(signal: AbortSignal): Promise<Frame>;
  dispose(): void;
}

export type FrameReaderFactory = (stream: MediaStream) => FrameReader;

export interface FrameCaptureHost {
  clock: Clock;
  kernel: KernelChannel;
  /** the stream a `which` names now, if any */
  stream(which: Which): MediaStream | null;
  /** whether a session is starting or running (else nothing will ever come) */
  active(): boolean;
  /** whether a view of the widget is in the page (absent: always) */
  shown?(): boolean;
  /** call `listener` whenever streams or the session's state change; returns the unsubscribe */
  subscribe(listener: () => void): () => void;
  reader: FrameReaderFactory;
}

/** Why no frame came; `kind` travels to the kernel, which raises the matching typed error. */
export class FrameRefused extends Error {
  constructor(
    readonly kind: "not_started" | "stopped" | "timeout" | "hidden",
    message: string,
  ) {
    super(message);
  }
}

/** Frames a stream may have sent and not yet seen acknowledged. */
export const STREAM_WINDOW = 2;
/** The highest rate a stream runs at, whatever the kernel asks (the kernel refuses more). */
export const MAX_STREAM_FPS = 30;

interface FrameStream {
  which: Which;
  intervalMs: number;
  inFlight: number;
  reading: boolean;
  timer: unknown;
  abort: AbortController;
}

/** How long a request waits for a view of the widget to come before it is refused as hidden. */
export const VIEW_GRACE_MS = 2000;
const VIEW_POLL_MS = 100;

/** Upper bound of a request's wait, whatever the kernel asks (the kernel's own limit is lower). */
export const MAX_FRAME_WAIT_MS = 600_000;

interface Waiting {
  which: Which;
  signal: AbortSignal;
  wake(): void;
}

export class FrameCapture {
  private readonly readers = new Map<Which, { stream: MediaStream; reader: FrameReader }>();
  private readonly waiting = new Set<Waiting>();
  private readonly streams = new Map<number, FrameStream>();
  private readonly stops: (() => void)[];
  private disposed = false;

  constructor(private readonly host: FrameCaptureHost) {
    this.stops = [
      host.kernel.listen((content) => this.onMessage(content)),
      host.subscribe(() => this.changed()),
    ];
  }

  /** One frame of `which`, waiting for the stream and its first decoded frame. */
  async next(which: Which, signal: AbortSignal): Promise<Frame> {
    for (;;) {
      const stream = await this.streamOf(which, signal);
      const reader = this.readerFor(which, stream);
      try {
        return await reader.read(signal);
      } catch (error) {
        if (signal.aborted) throw signal.reason ?? error;
        // the stream was replaced under the read (a source change, a reconnect): read the new one
        if (this.host.stream(which) === stream) throw error;
      }
    }
  }

  dispose(): void {
    this.disposed = true;
    for (const id of [...this.streams.keys()]) this.endStream(id);
    for (const stop of this.stops) stop();
    for (const { reader } of this.readers.values()) reader.dispose();
    this.readers.clear();
    for (const waiting of this.waiting) waiting.wake();
  }

  private onMessage(content: unknown): void {
    if (!content || typeof content !== "object") return;
    const message = content as Record<string, unknown>;
    if (message.type === "frame_stream" && typeof message.id === "number") {
      this.endStream(message.id);
      const fps = typeof message.fps === "number" ? Math.min(message.fps, MAX_STREAM_FPS) : 0;
      if (fps > 0) this.beginStream(message.id, message.which === "input" ? "input" : "output", fps);
      return;
    }
    if (message.type === "frame_ack" && typeof message.stream === "number") {
      const stream = this.streams.get(message.stream);
      if (stream) stream.inFlight = Math.max(0, stream.inFlight - 1);
      return;
    }
    if (message.type !== "frame_request" || typeof message.id !== "number") return;
    const which: Which = message.which === "input" ? "input" : "output";
    const timeout = typeof message.timeout_ms === "number" ? message.timeout_ms : 10_000;
    void this.answer(message.id, which, Math.min(Math.max(timeout, 0), MAX_FRAME_WAIT_MS));
  }

  private async answer(id: number, which: Which, timeoutMs: number): Promise<void> {
    // checked first: a view removed for ORPHAN_GRACE_MS stops the session, and the cause is the view
    if (this.host.shown?.() === false && !(await this.viewShown())) {
      this.refuse(
        id,
        new FrameRefused("hidden", "No view of the widget is in the page (its output was cleared or closed): display it again."),
      );
      return;
    }
    if (!this.host.active()) {
      this.refuse(id, new FrameRefused("not_started", "The widget is not started: call w.start() (or press Start) first."));
      return;
    }
    const abort = new AbortController();
    const timer = this.host.clock.setTimeout(
      () =>
        abort.abort(new FrameRefused("timeout", `No ${which} frame within ${timeoutMs / 1000} s (the session is ${this.stateWords()}).`)),
      timeoutMs,
    );
    try {
      const frame = await this.next(which, abort.signal);
      if (this.disposed) return;
      // a copy the comm may own: the reader reuses its buffers
      const rgb = frame.rgb.slice();
      this.host.kernel.send(
        { type: "frame", id, which, width: frame.width, height: frame.height },
        [rgb.buffer as ArrayBuffer],
      );
    } catch (error) {
      this.refuse(
        id,
        error instanceof FrameRefused ? error : new FrameRefused("stopped", String((error as Error)?.message ?? error)),
      );
    } finally {
      this.host.clock.clearTimeout(timer);
      abort.abort();
    }
  }

  /** Whether a view is in the page, waiting VIEW_GRACE_MS for one being rendered (`display(w)`
   *  and `await w.snapshot()` in one cell: the request can come before the view). */
  private async viewShown(): Promise<boolean> {
    const shown = (): boolean => this.host.shown?.() !== false;
    for (let waited = 0; !shown() && waited < VIEW_GRACE_MS; waited += VIEW_POLL_MS) {
      await new Promise<void>((resolve) => this.host.clock.setTimeout(() => resolve(), VIEW_POLL_MS));
      if (this.disposed) return false;
    }
    return shown();
  }

  private beginStream(id: number, which: Which, fps: number): void {
    const stream: FrameStream = {
      which,
      intervalMs: 1000 / fps,
      inFlight: 0,
      reading: false,
      timer: null,
      abort: new AbortController(),
    };
    this.streams.set(id, stream);
    const tick = (): void => {
      if (this.streams.get(id) !== stream) return;
      stream.timer = this.host.clock.setTimeout(tick, stream.intervalMs);
      if (stream.reading || stream.inFlight >= STREAM_WINDOW || !this.host.active()) return;
      const source = this.host.stream(which);
      if (!source) return;
      stream.reading = true;
      this.readerFor(which, source)
        .read(stream.abort.signal)
        .then(
          (frame) => {
            if (this.streams.get(id) !== stream || this.disposed) return;
            stream.inFlight++;
            const rgb = frame.rgb.slice();
            this.host.kernel.send(
              { type: "frame", stream: id, which, width: frame.width, height: frame.height },
              [rgb.buffer as ArrayBuffer],
            );
          },
          (error: unknown) => debug("a stream frame was not read:", error),
        )
        .finally(() => {
          stream.reading = false;
        });
    };
    tick();
  }

  private endStream(id: number): void {
    const stream = this.streams.get(id);
    if (!stream) return;
    this.streams.delete(id);
    this.host.clock.clearTimeout(stream.timer);
    stream.abort.abort();
  }

  private refuse(id: number, error: FrameRefused): void {
    if (this.disposed) return;
    debug("frame request refused:", error.kind, error.message);
    this.host.kernel.send({ type: "frame_error", id, kind: error.kind, message: error.message });
  }

  private stateWords(): string {
    return this.host.active() ? "running, with no decoded frame yet" : "stopped";
  }

  /** The stream of `which`, once there is one; rejects if the session stops first. */
  private streamOf(which: Which, signal: AbortSignal): Promise<MediaStream> {
    return new Promise((resolve, reject) => {
      const waiting: Waiting = {
        which,
        signal,
        wake: () => {
          if (signal.aborted) {
            done();
            reject(signal.reason);
          } else if (this.disposed || !this.host.active()) {
            done();
            reject(new FrameRefused("stopped", "The session stopped before a frame arrived."));
          } else {
            const stream = this.host.stream(which);
            if (stream) {
              done();
              resolve(stream);
            }
          }
        },
      };
      const done = (): void => {
        this.waiting.delete(waiting);
        signal.removeEventListener("abort", waiting.wake);
      };
      this.waiting.add(waiting);
      signal.addEventListener("abort", waiting.wake);
      waiting.wake();
    });
  }

  private readerFor(which: Which, stream: MediaStream): FrameReader {
    const current = this.readers.get(which);
    if (current?.stream === stream) return current.reader;
    current?.reader.dispose();
    const reader = this.host.reader(stream);
    this.readers.set(which, { stream, reader });
    return reader;
  }

  private changed(): void {
    for (const [which, { stream, reader }] of [...this.readers]) {
      if (this.host.stream(which) !== stream) {
        reader.dispose(); // its pending read rejects; next() moves to the new stream
        this.readers.delete(which);
      }
    }
    for (const waiting of [...this.waiting]) waiting.wake();
  }
}
