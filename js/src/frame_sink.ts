// Frames from Python on a canvas: the input of `RealtimeWidget(source=frames)` (python_source.ts)
// and the picture of a `SessionView` (session_view.ts). The kernel's side and the messages are in
// decart_widget/widget/_frame_feed.py:
//
//   page -> kernel  {type:"source_open", id, width, height}   (0 x 0: the frames' own size)
//   kernel -> page  {type:"source_frame", id, width, height} + the RGB pixels as one buffer
//   page -> kernel  {type:"source_ack", id}                   (once drawn: the kernel's window)
//   kernel -> page  {type:"source_end" | "source_error", id, message}
//   page -> kernel  {type:"source_close", id}

import { debug } from "./log";
import type { KernelChannel } from "./transports";

interface SourceMessage {
  type?: unknown;
  id?: unknown;
  width?: unknown;
  height?: unknown;
  message?: unknown;
}

function bytesOf(buffer: unknown): Uint8Array | null {
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  if (ArrayBuffer.isView(buffer)) return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  return null;
}

/** One opening of a kernel's frame feed: each frame is drawn on `canvas` (at its own size). */
export class FrameSink {
  readonly canvas: HTMLCanvasElement;
  readonly id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  /** frames drawn so far */
  frames = 0;
  /** why the kernel stopped sending, once it did */
  over: string | null = null;
  private image: ImageData | null = null;
  private readonly context: CanvasRenderingContext2D | null;
  private readonly stopListening: () => void;

  constructor(
    private readonly kernel: KernelChannel,
    size: { width: number; height: number },
    canvas: HTMLCanvasElement = document.createElement("canvas"),
    /** after each frame drawn, and once the kernel stopped sending (`over` says why) */
    private readonly changed: () => void = () => undefined,
  ) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.stopListening = kernel.listen((content, buffers) => this.receive(content as SourceMessage | null, buffers));
    kernel.send({ type: "source_open", id: this.id, width: size.width, height: size.height });
  }

  close(): void {
    this.stopListening();
    this.kernel.send({ type: "source_close", id: this.id });
  }

  private receive(message: SourceMessage | null, buffers: unknown[]): void {
    if (!message || message.id !== this.id) return;
    if (message.type === "source_end" || message.type === "source_error") {
      this.over = String(message.message ?? message.type);
      debug("the Python frames stopped:", this.over);
      this.changed();
      return;
    }
    if (message.type !== "source_frame") return;
    const width = Number(message.width);
    const height = Number(message.height);
    const rgb = bytesOf(buffers[0]);
    if (rgb && width > 0 && height > 0 && rgb.length === width * height * 3) this.draw(rgb, width, height);
    else debug("dropping a malformed Python frame", width, height, rgb?.length);
    // acknowledged drawn or not: the kernel's window must not shrink for a bad frame
    this.kernel.send({ type: "source_ack", id: this.id });
  }

  private draw(rgb: Uint8Array, width: number, height: number): void {
    if (!this.context) return;
    if (this.image?.width !== width || this.image.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      this.image = this.context.createImageData(width, height);
      this.image.data.fill(255); // alpha stays opaque; the colours are written below
    }
    const rgba = this.image.data;
    for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
      rgba[i] = rgb[j]!;
      rgba[i + 1] = rgb[j + 1]!;
      rgba[i + 2] = rgb[j + 2]!;
    }
    this.context.putImageData(this.image, 0, 0);
    this.frames++;
    this.changed();
  }
}

