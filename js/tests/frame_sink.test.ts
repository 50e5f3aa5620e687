import { describe, expect, it } from "vitest";
import { FrameSink } from "../src/frame_sink";
import { KernelComm } from "../src/kernel_comm";
import { FakeModel } from "./fakes";

/** A canvas whose 2D context records the pixels put on it (happy-dom draws nothing). */
function recordingCanvas() {
  const puts: { width: number; height: number; rgba: number[] }[] = [];
  const context = {
    createImageData: (width: number, height: number) => ({ width, height, data: new Uint8ClampedArray(width * height * 4) }),
    putImageData: (image: ImageData) => puts.push({ width: image.width, height: image.height, rgba: [...image.data] }),
  };
  const canvas = { width: 300, height: 150, getContext: () => context } as unknown as HTMLCanvasElement;
  return { canvas, puts };
}

function setup() {
  const model = new FakeModel();
  const comm = new KernelComm(model.asModel());
  const { canvas, puts } = recordingCanvas();
  let changes = 0;
  const sink = new FrameSink(comm.channel(), { width: 1088, height: 624 }, canvas, () => changes++);
  return { model, sink, canvas, puts, changes: () => changes };
}

describe("FrameSink", () => {
  it("opens the feed with its id and the size it wants", () => {
    const { model, sink } = setup();
    expect(model.fromFront).toEqual([{ type: "source_open", id: sink.id, width: 1088, height: 624 }]);
  });

  it("draws each frame of its id as RGBA at the frame's size and acknowledges it", () => {
    const { model, sink, canvas, puts, changes } = setup();
    const rgb = new Uint8Array([1, 2, 3, 4, 5, 6]); // 2 x 1
    model.fromKernel({ type: "source_frame", id: sink.id, width: 2, height: 1 }, [new DataView(rgb.buffer)]);
    expect(puts).toEqual([{ width: 2, height: 1, rgba: [1, 2, 3, 255, 4, 5, 6, 255] }]);
    expect([canvas.width, canvas.height]).toEqual([2, 1]);
    expect(sink.frames).toBe(1);
    expect(changes()).toBe(1);
    expect(model.fromFront.at(-1)).toEqual({ type: "source_ack", id: sink.id });
  });

  it("ignores another opening's frames, and acknowledges a malformed one without drawing it", () => {
    const { model, sink, puts } = setup();
    model.fromKernel({ type: "source_frame", id: "other", width: 1, height: 1 }, [new Uint8Array(3).buffer]);
    expect(model.fromFront).toHaveLength(1); // only the open
    model.fromKernel({ type: "source_frame", id: sink.id, width: 4, height: 4 }, [new Uint8Array(3).buffer]);
    expect(puts).toEqual([]);
    expect(model.fromFront.at(-1)).toEqual({ type: "source_ack", id: sink.id });
  });

  it("keeps why the kernel stopped sending, and closes the feed when closed", () => {
    const { model, sink, changes } = setup();
    model.fromKernel({ type: "source_error", id: sink.id, message: "the frame source failed: boom" });
    expect(sink.over).toBe("the frame source failed: boom");
    expect(changes()).toBe(1);
    sink.close();
    expect(model.fromFront.at(-1)).toEqual({ type: "source_close", id: sink.id });
    model.fromKernel({ type: "source_frame", id: sink.id, width: 1, height: 1 }, [new Uint8Array(3).buffer]);
    expect(model.fromFront.at(-1)).toEqual({ type: "source_close", id: sink.id }); // no longer listening
  });
});
