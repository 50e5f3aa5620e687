// The entry of the capture asset (decart_widget/widget/static/sources.js): the screen,
// video-file and Python-frames (python_source.ts) sources, which few widgets use, loaded with the first such source (sources.ts) so
// that widget.js, which every notebook loads, stays small (tests/unit/test_bundle_budget.py).

import { InvalidInput } from "./errors";
import { openPython } from "./python_source";
import type { KernelChannel } from "./transports";
import {
  type InputSource,
  type MediaEnvironment,
  type SourceOptions,
  canvasSource,
  describeCaptureFailure,
  drawCover,
  fromStream,
  hiddenVideo,
  type SourceKind,
} from "./sources";

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

