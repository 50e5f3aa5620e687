// Where the input video comes from: the camera, a shared screen, a video file sent from Python,
// frames sent from Python (python_source.ts), or a synthetic animation. Each opener returns one live track and a stop() that releases all
// it took (tracks, timers, object URLs, elements). Failures come back as typed, actionable errors.

import { DecartError, InvalidInput, MediaError } from "./errors";
import { drawSynthetic } from "./synthetic";
import type { KernelChannel } from "./transports";

export type SourceKind = "camera" | "screen" | "video" | "synthetic" | "python";

export interface SourceOptions {
  width: number;
  height: number;
  fps: number;
  deviceId: string;
  /** extra getUserMedia video constraints (the `camera` traitlet, checked by the kernel) */
  camera?: MediaTrackConstraints;
  mirror: boolean;
  video: Uint8Array | null;
}

export interface InputSource {
  readonly stream: MediaStream;
  readonly track: MediaStreamTrack;
  stop(): void;
}

/** Loads a front-end asset of the page (asset_loader.ts): the screen and video-file sources. */
export type AssetLoad = (name: string) => Promise<unknown>;
export type SourceOpener = (
  kind: SourceKind,
  options: SourceOptions,
  loadAsset?: AssetLoad,
  kernel?: KernelChannel,
) => Promise<InputSource>;

/** The capture asset's entry (capture_sources.ts): sources few widgets use, kept out of widget.js. */
export interface CaptureSources {
  open(kind: SourceKind, options: SourceOptions, env: MediaEnvironment, kernel?: KernelChannel): Promise<InputSource>;
  describeCaptureFailure(error: unknown, kind: SourceKind, env: MediaEnvironment): DecartError;
  /** the camera's `stream` mirrored (mirror=True) */
  mirror(stream: MediaStream, options: SourceOptions): Promise<InputSource>;
}

export interface MediaEnvironment {
  hasMediaDevices: boolean;
  secureContext: boolean;
  vscode: boolean;
}

export function browserEnvironment(): MediaEnvironment {
  const nav = globalThis.navigator;
  const location = globalThis.location;
  return {
    hasMediaDevices: Boolean(nav?.mediaDevices?.getUserMedia),
    secureContext: globalThis.isSecureContext !== false,
    vscode:
      location?.protocol === "vscode-webview:" ||
      /\bCode\/\d/.test(nav?.userAgent ?? "") ||
      typeof (globalThis as { acquireVsCodeApi?: unknown }).acquireVsCodeApi === "function",
  };
}

export const VSCODE_HINT =
  'VS Code notebooks give widgets no camera: use source="video" (a file) or source="synthetic" instead.';

/** Why capture cannot even be tried here, or null when it can. */
export function captureUnavailable(kind: SourceKind, env: MediaEnvironment): DecartError | null {
  if (kind !== "camera" && kind !== "screen") return null;
  if (env.vscode && kind === "camera") return new MediaError("camera", VSCODE_HINT);
  if (!env.hasMediaDevices || !env.secureContext) {
    return new MediaError(
      "insecure_context",
      `This page cannot use the ${kind === "camera" ? "camera" : "screen"}: browsers allow capture only in a secure context. Serve Jupyter over HTTPS or open it on localhost.`,
    );
  }
  return null;
}

export function cameraConstraints(options: SourceOptions): MediaStreamConstraints {
  const video: MediaTrackConstraints = {
    width: { ideal: options.width },
    height: { ideal: options.height },
    frameRate: { ideal: options.fps },
    ...options.camera,
  };
  if (options.deviceId) video.deviceId = { exact: options.deviceId };
  return { video, audio: false };
}

export async function listCameras(): Promise<MediaDeviceInfo[]> {
  const devices = (await globalThis.navigator?.mediaDevices?.enumerateDevices?.()) ?? [];
  return devices.filter((device) => device.kind === "videoinput");
}

export function stopStream(stream: MediaStream): void {
  for (const track of stream.getTracks()) track.stop();
}

export function fromStream(stream: MediaStream, cleanup: () => void = () => {}): InputSource {
  const track = stream.getVideoTracks()[0];
  if (!track) {
    stopStream(stream);
    throw new MediaError("camera", "The capture gave no video track.");
  }
  return {
    stream,
    track,
    stop() {
      cleanup();
      stopStream(stream);
    },
  };
}

/** Redraws a canvas at `fps` and captures it: used for mirroring, video files and synthetic. */
export function canvasSource(options: SourceOptions, draw: (ctx: CanvasRenderingContext2D, t: number) => void, cleanup: () => void): InputSource {
  const canvas = document.createElement("canvas");
  canvas.width = options.width;
  canvas.height = options.height;
  // opaque: every frame covers the whole canvas, and the encoder has no use for alpha
  const ctx = canvas.getContext("2d", { alpha: false });
  if (!ctx) throw new MediaError("camera", "This browser cannot draw on a canvas.");
  const started = performance.now();
  const timer = setInterval(() => draw(ctx, (performance.now() - started) / 1000), 1000 / options.fps);
  draw(ctx, 0);
  return fromStream(canvas.captureStream(options.fps), () => {
    clearInterval(timer);
    cleanup();
  });
}

async function openCamera(options: SourceOptions, env: MediaEnvironment, loadAsset?: AssetLoad): Promise<InputSource> {
  let stream: MediaStream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(cameraConstraints(options));
  } catch (error) {
    throw await cameraFailure(error, env, loadAsset);
  }
  if (!options.mirror) return fromStream(stream);
  // Mirror what the model sees, not only the preview: a canvas, in the capture asset.
  try {
    if (!loadAsset) throw new MediaError("camera", "This page cannot load the mirrored camera.");
    return await ((await loadAsset("sources")) as CaptureSources).mirror(stream, options);
  } catch (error) {
    stopStream(stream);
    throw error;
  }
}

/** A getUserMedia failure as an actionable error; the words are in the capture asset (a failure is
 * rare, and widget.js stays small), with a plainer message if it cannot load. */
async function cameraFailure(error: unknown, env: MediaEnvironment, loadAsset?: AssetLoad): Promise<DecartError> {
  try {
    return ((await loadAsset?.("sources")) as CaptureSources).describeCaptureFailure(error, "camera", env);
  } catch {
    return new MediaError("camera", `The camera could not start (${(error as Error | null)?.name ?? error}).`);
  }
}

/** The sources few widgets use: screen, video file, Python frames (the capture asset). */
async function openCaptured(
  kind: SourceKind,
  options: SourceOptions,
  env: MediaEnvironment,
  loadAsset: AssetLoad | undefined,
  kernel: KernelChannel | undefined,
): Promise<InputSource> {
  if (!loadAsset) throw new MediaError("camera", `This page cannot load the ${kind} source.`);
  return ((await loadAsset("sources")) as CaptureSources).open(kind, options, env, kernel);
}

/** The opener the widget uses in a browser. */
export function createSourceOpener(env: () => MediaEnvironment = browserEnvironment): SourceOpener {
  return async (kind, options, loadAsset, kernel) => {
    const environment = env();
    const unavailable = captureUnavailable(kind, environment);
    if (unavailable) throw unavailable;
    switch (kind) {
      case "camera":
        return openCamera(options, environment, loadAsset);
      case "synthetic":
        return canvasSource(options, drawSynthetic, () => {});
      default: // an unknown kind is refused there
        return openCaptured(kind, options, environment, loadAsset, kernel);
    }
  };
}
