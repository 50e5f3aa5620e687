// The entry of the capture asset (decart_widget/widget/static/sources.js): the screen,
// video-file and Python-frames (python_source.ts) sources and the mirrored camera, which few
// widgets use, loaded with the first such source (sources.ts) so
// that widget.js, which every notebook loads, stays small (tests/unit/test_bundle_budget.py).

import { DecartError, InvalidInput, MediaError } from "./errors";
import { openPython } from "./python_source";
import type { KernelChannel } from "./transports";
import {
  type InputSource,
  type MediaEnvironment,
  type SourceOptions,
  canvasSource,
  fromStream,
  type SourceKind,
  stopStream,
  VSCODE_HINT,
} from "./sources";

const OTHER_SOURCES = 'Or use source="video" or source="synthetic".';

/** The source `kind` (sources.ts opens the camera and the synthetic pattern itself). */
export async function open(
  kind: SourceKind,
  options: SourceOptions,
  env: MediaEnvironment,
  kernel?: KernelChannel,
): Promise<InputSource> {
  switch (kind) {
    case "screen":
      return openScreen(options, env);
    case "video":
      return openVideo(options);
    case "python":
      return openPython(options, kernel);
    default:
      throw new InvalidInput(`Unknown source ${JSON.stringify(kind)}: use camera, screen, video, synthetic or Python frames.`);
  }
}

/** A getUserMedia/getDisplayMedia failure as an actionable error (sources.ts asks for a camera's). */
export function describeCaptureFailure(error: unknown, kind: SourceKind, env: MediaEnvironment): DecartError {
  if (error instanceof DecartError) return error;
  const name = (error as { name?: string } | null)?.name ?? "";
  const detail = (error as { message?: string } | null)?.message ?? String(error);
  if (kind === "screen") {
    if (name === "NotAllowedError" || name === "AbortError" || name === "InvalidStateError") {
      return new MediaError("permission", "Screen sharing was cancelled or not allowed: press Start and pick a screen or window.");
    }
    return new MediaError("camera", `Screen capture failed (${name || detail}).`);
  }
  if (env.vscode) return new MediaError("camera", VSCODE_HINT);
  switch (name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return new MediaError(
        "permission",
        "Camera permission denied: allow the camera for this page (the camera icon in the address bar), then press Start.",
      );
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return new MediaError("camera", `No camera found: connect one and press Start. ${OTHER_SOURCES}`);
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return new MediaError(
        "camera",
        "The camera is busy: another application or tab is using it. Close it, then press Start.",
      );
    default:
      return new MediaError("camera", `The camera could not start (${name || detail}). ${OTHER_SOURCES}`);
  }
}

/** The camera's `stream` drawn mirrored on a canvas, so the model sees what the preview shows. */
export async function mirror(stream: MediaStream, options: SourceOptions): Promise<InputSource> {
  const video = hiddenVideo();
  video.srcObject = stream;
  await video.play().catch(() => {});
  return canvasSource(options, (ctx) => drawCover(ctx, video, true), () => {
    video.srcObject = null;
    stopStream(stream);
  });
}

export async function openScreen(options: SourceOptions, env: MediaEnvironment): Promise<InputSource> {
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: options.fps }, width: { ideal: options.width }, height: { ideal: options.height } },
      audio: false,
    });
    return fromStream(stream);
  } catch (error) {
    throw describeCaptureFailure(error, "screen", env);
  }
}

export async function openVideo(options: SourceOptions): Promise<InputSource> {
  if (!options.video?.byteLength) {
    throw new InvalidInput('source="video" needs a video: give the widget video=<path, URL or bytes>.');
  }
  const url = URL.createObjectURL(new Blob([options.video as Uint8Array<ArrayBuffer>]));
  const video = hiddenVideo();
  video.loop = true;
  video.src = url;
  const release = (): void => {
    video.pause();
    video.removeAttribute("src");
    video.load();
    URL.revokeObjectURL(url);
  };
  try {
    await video.play();
  } catch (error) {
    release();
    throw new InvalidInput(
      `This browser cannot play the video (${(error as Error)?.message ?? error}): try an MP4 (H.264) or WebM file.`,
    );
  }
  return canvasSource(options, (ctx) => drawCover(ctx, video, options.mirror), release);
}

/** Draw `video` to fill the canvas (cropping, not stretching), optionally mirrored. */
function drawCover(ctx: CanvasRenderingContext2D, video: HTMLVideoElement, mirror: boolean): void {
  const { width, height } = ctx.canvas;
  const vw = video.videoWidth;
  const vh = video.videoHeight;
  if (!vw || !vh) return;
  const scale = Math.max(width / vw, height / vh);
  const w = vw * scale;
  const h = vh * scale;
  ctx.save();
  if (mirror) {
    ctx.translate(width, 0);
    ctx.scale(-1, 1);
  }
  ctx.drawImage(video, (width - w) / 2, (height - h) / 2, w, h);
  ctx.restore();
}

function hiddenVideo(): HTMLVideoElement {
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  return video;
}
