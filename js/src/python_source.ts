// Frames from Python as the widget's input, `RealtimeWidget(source=frames)` (part of the capture
// asset, capture_sources.ts): the kernel's frames (frame_sink.ts) drawn on a canvas of the model's
// size, redrawn at the model's rate, whose captured track the media transport publishes.

import { InvalidInput } from "./errors";
import { FrameSink } from "./frame_sink";
import { canvasSource, type InputSource, type SourceOptions } from "./sources";
import type { KernelChannel } from "./transports";

/** Draw `image` (w x h) to fill the context's canvas, cropping, not stretching. */
export function drawImageCover(ctx: CanvasRenderingContext2D, image: CanvasImageSource, w: number, h: number): void {
  const { width, height } = ctx.canvas;
  if (!w || !h) return;
  const scale = Math.max(width / w, height / h);
  ctx.drawImage(image, (width - w * scale) / 2, (height - h * scale) / 2, w * scale, h * scale);
}

/** The widget's input from Python: a canvas of the model's size, redrawn at its rate. */
export function openPython(options: SourceOptions, kernel: KernelChannel | undefined): InputSource {
  if (!kernel) throw new InvalidInput('source=<frames> needs the kernel: this page has no comm to it.');
  const sink = new FrameSink(kernel, options);
  return canvasSource(
    options,
    (ctx) => {
      if (sink.frames) drawImageCover(ctx, sink.canvas, sink.canvas.width, sink.canvas.height);
    },
    () => sink.close(),
  );
}
