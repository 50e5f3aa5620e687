import { describe, expect, it } from "vitest";
import {
  type Frame,
  FrameCapture,
  type FrameReader,
  MAX_STREAM_FPS,
  STREAM_WINDOW,
  VIEW_GRACE_MS,
  type Which,
} from "../src/frame_capture";
import { KernelComm } from "../src/kernel_comm";
import { rgbaToRgb } from "../src/video_frames";
import { clockOf, FakeClock, FakeModel, flush } from "./fakes";

/** A reader whose frames the test hands out; `read` waits until one is given. */
class FakeReader implements FrameReader {
  disposed = false;
  private waiters: { resolve(frame: Frame): void; reject(error: unknown): void }[] = [];
  read(signal: AbortSignal): Promise<Frame> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      signal.addEventListener("abort", () => reject(signal.reason));
    });
  }
  give(width: number, height: number, value: number): void {
    const frame = { width, height, rgb: new Uint8Array(width * height * 3).fill(value) };
    for (const waiter of this.waiters.splice(0)) waiter.resolve(frame);
  }
  dispose(): void {
    this.disposed = true;
    for (const waiter of this.waiters.splice(0)) waiter.reject(new Error("disposed"));
  }
}

function setup() {
  const model = new FakeModel();
  const clock = new FakeClock();
  const comm = new KernelComm(model.asModel());
  const streams: Record<Which, MediaStream | null> = { input: null, output: null };
  const readers = new Map<MediaStream, FakeReader>();
  const listeners = new Set<() => void>();
  const world = {
    model,
    clock,
    streams,
    readers,
    active: false,
    /** whether a view of the widget is in the page */
    shown: true,
    /** the controller's notify(): streams or state changed */
    notify: () => listeners.forEach((listener) => listener()),
  };
  const capture = new FrameCapture({
    clock: clockOf(clock),
    kernel: comm.channel(),
    stream: (which) => streams[which],
    active: () => world.active,
    shown: () => world.shown,
    subscribe: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    reader: (stream) => {
      const reader = new FakeReader();
      readers.set(stream, reader);
      return reader;
    },
  });
  return Object.assign(world, { capture, listeners });
}

const stream = (name: string) => ({ id: name }) as unknown as MediaStream;

describe("FrameCapture", () => {
  it("refuses at once when the widget is not started", async () => {
    const w = setup();
    w.model.fromKernel({ type: "frame_request", id: 7, which: "output", timeout_ms: 5000 });
    await flush();
    expect(w.model.fromFront).toEqual([
      { type: "frame_error", id: 7, kind: "not_started", message: expect.stringContaining("w.start()") },
    ]);
  });

  it("refuses as hidden when no view of the widget is in the page, started or not", async () => {
    const w = setup();
    w.shown = false;
    w.active = true;
    w.streams.output = stream("out");
    w.model.fromKernel({ type: "frame_request", id: 3, which: "output", timeout_ms: 5000 });
    w.active = false;
    w.model.fromKernel({ type: "frame_request", id: 4, which: "input", timeout_ms: 5000 });
    await flush();
    expect(w.model.fromFront).toEqual([]); // a view may be on its way (display(w) in the same cell)
    for (let i = 0; i < VIEW_GRACE_MS / 100; i++) {
      w.clock.advance(0.1);
      await flush();
    }
    expect(w.model.fromFront).toEqual([
      { type: "frame_error", id: 3, kind: "hidden", message: expect.stringContaining("display it again") },
      { type: "frame_error", id: 4, kind: "hidden", message: expect.stringContaining("display it again") },
    ]);
    expect(w.readers.size).toBe(0);
  });

  it("answers a request that came just before the view was rendered", async () => {
    const w = setup();
    w.shown = false;
    w.active = true;
    w.streams.output = stream("out");
    w.model.fromKernel({ type: "frame_request", id: 5, which: "output", timeout_ms: 5000 });
    w.clock.advance(0.3);
    await flush();
    w.shown = true; // the view rendered
    w.clock.advance(0.1);
    await flush();
    w.readers.get(w.streams.output)!.give(2, 1, 9);
    await flush();
    expect(w.model.fromFront).toEqual([{ type: "frame", id: 5, which: "output", width: 2, height: 1 }]);
  });

  it("waits for the stream and its first frame, then answers with the RGB pixels as one buffer", async () => {
    const w = setup();
    w.active = true; // started: the source is opening
    w.model.fromKernel({ type: "frame_request", id: 1, which: "output", timeout_ms: 5000 });
    await flush();
    expect(w.model.fromFront).toEqual([]);
    const output = stream("out");
    w.streams.output = output;
    w.notify();
    await flush();
    expect(w.model.fromFront).toEqual([]); // a stream, but no decoded frame yet
    w.readers.get(output)!.give(4, 2, 9);
    await flush();
    expect(w.model.fromFront).toEqual([{ type: "frame", id: 1, which: "output", width: 4, height: 2 }]);
    const [buffer] = w.model.fromFrontBuffers[0] as ArrayBuffer[];
    expect(new Uint8Array(buffer!)).toEqual(new Uint8Array(4 * 2 * 3).fill(9));
    expect(w.clock.pending()).toBe(0);
  });

  it("reads the input stream for which=input", async () => {
    const w = setup();
    w.active = true;
    w.streams.input = stream("in");
    w.streams.output = stream("out");
    w.model.fromKernel({ type: "frame_request", id: 2, which: "input", timeout_ms: 5000 });
    await flush();
    expect(w.readers.has(w.streams.output)).toBe(false);
    w.readers.get(w.streams.input)!.give(1, 1, 3);
    await flush();
    expect(w.model.fromFront).toEqual([{ type: "frame", id: 2, which: "input", width: 1, height: 1 }]);
  });

  it("times out with the request's timeout", async () => {
    const w = setup();
    w.active = true;
    w.model.fromKernel({ type: "frame_request", id: 3, which: "output", timeout_ms: 2000 });
    w.clock.advance(1.999);
    await flush();
    expect(w.model.fromFront).toEqual([]);
    w.clock.advance(0.001);
    await flush();
    expect(w.model.fromFront).toEqual([
      { type: "frame_error", id: 3, kind: "timeout", message: expect.stringContaining("No output frame within 2 s") },
    ]);
  });

  it("a session that stops while a request waits refuses it as stopped", async () => {
    const w = setup();
    w.active = true;
    w.model.fromKernel({ type: "frame_request", id: 4, which: "output", timeout_ms: 5000 });
    await flush();
    w.active = false;
    w.notify();
    await flush();
    expect(w.model.fromFront).toEqual([
      { type: "frame_error", id: 4, kind: "stopped", message: expect.stringContaining("stopped") },
    ]);
    expect(w.clock.pending()).toBe(0);
  });

  it("follows a stream replaced under a read (reconnect, source change)", async () => {
    const w = setup();
    w.active = true;
    const first = stream("first");
    w.streams.output = first;
    w.model.fromKernel({ type: "frame_request", id: 5, which: "output", timeout_ms: 5000 });
    await flush();
    const second = stream("second");
    w.streams.output = second;
    w.notify();
    await flush();
    expect(w.readers.get(first)!.disposed).toBe(true);
    w.readers.get(second)!.give(2, 2, 200);
    await flush();
    expect(w.model.fromFront).toEqual([{ type: "frame", id: 5, which: "output", width: 2, height: 2 }]);
  });

  it("keeps one reader per stream across requests", async () => {
    const w = setup();
    w.active = true;
    const output = stream("out");
    w.streams.output = output;
    for (const id of [1, 2]) {
      w.model.fromKernel({ type: "frame_request", id, which: "output", timeout_ms: 5000 });
      await flush();
      w.readers.get(output)!.give(1, 1, id);
      await flush();
    }
    expect(w.readers.size).toBe(1);
    expect(w.model.fromFront.map((m) => (m as { id: number }).id)).toEqual([1, 2]);
  });

  it("after dispose it stops listening and disposes its readers", async () => {
    const w = setup();
    w.active = true;
    w.streams.output = stream("out");
    w.model.fromKernel({ type: "frame_request", id: 1, which: "output", timeout_ms: 5000 });
    await flush();
    w.capture.dispose();
    await flush();
    expect(w.readers.get(w.streams.output)!.disposed).toBe(true);
    expect(w.listeners.size).toBe(0);
    w.model.fromKernel({ type: "frame_request", id: 2, which: "output", timeout_ms: 5000 });
    await flush();
    expect(w.model.fromFront).toEqual([]);
  });
});

describe("FrameCapture streams", () => {
  const sentFrames = (w: ReturnType<typeof setup>) =>
    w.model.fromFront.filter((m) => (m as { type: string }).type === "frame") as { stream: number }[];

  it("sends a frame every 1/fps s, never more than the window ahead of the kernel's acks", async () => {
    const w = setup();
    w.active = true;
    const output = stream("out");
    w.streams.output = output;
    w.model.fromKernel({ type: "frame_stream", id: 3, which: "output", fps: 10 });
    for (let tick = 0; tick < 5; tick++) {
      await flush();
      w.readers.get(output)!.give(2, 1, tick);
      await flush();
      w.clock.advance(0.1);
    }
    // no acks: the window fills and later ticks are skipped (dropped, not queued)
    expect(sentFrames(w)).toHaveLength(STREAM_WINDOW);
    expect(sentFrames(w)[0]).toEqual({ type: "frame", stream: 3, which: "output", width: 2, height: 1 });
    w.model.fromKernel({ type: "frame_ack", stream: 3 });
    w.clock.advance(0.1);
    await flush();
    w.readers.get(output)!.give(2, 1, 9);
    await flush();
    expect(sentFrames(w)).toHaveLength(STREAM_WINDOW + 1);
  });

  it("stops on fps 0 and caps the rate", async () => {
    const w = setup();
    w.active = true;
    const output = stream("out");
    w.streams.output = output;
    w.model.fromKernel({ type: "frame_stream", id: 1, which: "output", fps: 1000 });
    await flush();
    w.readers.get(output)!.give(1, 1, 1);
    await flush();
    w.model.fromKernel({ type: "frame_ack", stream: 1 });
    w.clock.advance(1 / MAX_STREAM_FPS - 0.001);
    await flush();
    expect(w.readers.get(output)!["waiters"]).toHaveLength(0); // the next tick is not due yet
    w.model.fromKernel({ type: "frame_stream", id: 1, fps: 0 });
    w.clock.advance(1);
    await flush();
    expect(sentFrames(w)).toHaveLength(1);
    expect(w.clock.pending()).toBe(0);
  });

  it("waits while stopped and streams once started, with no frame_error", async () => {
    const w = setup();
    w.model.fromKernel({ type: "frame_stream", id: 2, which: "input", fps: 5 });
    w.clock.advance(1);
    await flush();
    expect(w.model.fromFront).toEqual([]);
    w.active = true;
    w.streams.input = stream("in");
    w.clock.advance(0.2);
    await flush();
    w.readers.get(w.streams.input)!.give(1, 1, 5);
    await flush();
    expect(sentFrames(w)).toEqual([{ type: "frame", stream: 2, which: "input", width: 1, height: 1 }]);
  });
});

describe("rgbaToRgb", () => {
  it("drops the alpha channel, pixel by pixel", () => {
    const rgba = new Uint8ClampedArray([1, 2, 3, 255, 4, 5, 6, 128]);
    expect(rgbaToRgb(rgba)).toEqual(new Uint8Array([1, 2, 3, 4, 5, 6]));
  });

  it("reuses the output buffer when it has the right size", () => {
    const out = new Uint8Array(3);
    expect(rgbaToRgb(new Uint8Array([7, 8, 9, 0]), out)).toBe(out);
    expect(rgbaToRgb(new Uint8Array([7, 8, 9, 0, 1, 1, 1, 1]), out)).not.toBe(out);
  });
});
