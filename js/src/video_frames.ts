// Reading pixels out of a MediaStream in the page (frame_capture.ts's FrameReader): a detached,
// muted <video> plays the stream, a canvas the size of the stream (videoWidth x videoHeight, the
// real size, not the view's) draws its current frame, and the RGBA pixels are packed to RGB.

import type { Frame, FrameReader } from "./frame_capture";

/** How often a read checks whether the video has decoded a frame yet. */
const POLL_MS = 20;

/** RGBA (canvas order) to RGB, into `out` if it has the right size. */
export function rgbaToRgb(rgba: Uint8ClampedArray | Uint8Array, out?: Uint8Array): Uint8Array {
  const pixels = rgba.length >> 2;
  const rgb = out && out.length === pixels * 3 ? out : new Uint8Array(pixels * 3);
  for (let i = 0, j = 0; i < pixels * 4; i += 4, j += 3) {
    rgb[j] = rgba[i]!;
    rgb[j + 1] = rgba[i + 1]!;
    rgb[j + 2] = rgba[i + 2]!;
  }
  return rgb;
}

export function videoFrameReader(stream: MediaStream): FrameReader {
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  void video.play().catch(() => undefined); // muted: allowed without a gesture
  const canvas = document.createElement("canvas");
  let context: CanvasRenderingContext2D | null = null;
  let rgb: Uint8Array | undefined;
  let disposed = false;

  const decoded = (): boolean => video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA && video.videoWidth > 0;

  const firstFrame = (signal: AbortSignal): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (signal.aborted) reject(signal.reason);
        else if (disposed) reject(new Error("the stream was replaced"));
        else if (decoded()) resolve();
        else globalThis.setTimeout(check, POLL_MS);
      };
      check();
    });

  return {
    async read(signal: AbortSignal): Promise<Frame> {
      await firstFrame(signal);
      const width = video.videoWidth;
      const height = video.videoHeight;
      if (canvas.width !== width || canvas.height !== height) {
        canvas.width = width;
        canvas.height = height;
        context = null;
      }
      context ??= canvas.getContext("2d", { willReadFrequently: true });
      if (!context) throw new Error("the page could not make a 2D canvas");
      context.drawImage(video, 0, 0, width, height);
      rgb = rgbaToRgb(context.getImageData(0, 0, width, height).data, rgb);
      return { width, height, rgb };
    },
    dispose(): void {
      disposed = true;
      video.pause();
      video.srcObject = null;
    },
  };
}
