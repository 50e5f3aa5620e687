// w.snapshot()'s and w.on_frame()'s frame capture (frame_capture.ts over video_frames.ts) and
// w.record()'s recorder (recorder.ts) are an asset the page loads with the first `frame_request`,
// `frame_stream` or `record_start` (asset_loader.ts), like the media transports: widget.js, which
// every notebook loads, stays small (tests/unit/test_bundle_budget.py). The requests that arrive
// while it loads are handed to it once it runs; if it cannot load, they are answered with a
// `frame_error` saying why (a stream, which has no one to answer, is logged), and a later request
// asks again.

import type { FrameCaptureHost } from "./frame_capture";
import { debug } from "./log";
import type { KernelChannel } from "./transports";

/** What the frame capture needs from the widget, and how to load its asset. */
export type FramesHost = Omit<FrameCaptureHost, "reader"> & { loadAsset(name: string): Promise<unknown> };
export type FramesFactory = (host: FramesHost) => { dispose(): void };

interface Request {
  type?: unknown;
  id?: unknown;
}

/** The messages that need the asset: a snapshot's request, a stream's start or end, a recording's
 * start (recorder.ts; a start the asset cannot answer times out in the kernel). */
const LOADING_MESSAGES = new Set<unknown>(["frame_request", "frame_stream", "record_start"]);

/** The frame capture of the asset `frames` (its `open(host)`), loaded on the first request. */
export const lazyFrames: FramesFactory = (host) => {
  let capture: { dispose(): void } | null = null;
  let loading = false;
  let disposed = false;
  const held: [unknown, unknown[]][] = [];
  const stop = host.kernel.listen((content, buffers) => {
    if (capture || !LOADING_MESSAGES.has((content as Request | null)?.type)) return;
    held.push([content, buffers]);
    if (loading) return;
    loading = true;
    host.loadAsset("frames").then(
      (module) => {
        if (disposed) return;
        stop();
        const replay = held.splice(0);
        const kernel: KernelChannel = {
          send: (message, extra) => host.kernel.send(message, extra),
          listen: (handler) => {
            void Promise.resolve().then(() => replay.forEach(([message, extra]) => handler(message, extra)));
            return host.kernel.listen(handler);
          },
        };
        capture = (module as { open(host: FramesHost): { dispose(): void } }).open({ ...host, kernel });
      },
      (error: unknown) => {
        loading = false;
        for (const [message] of held.splice(0)) {
          const text = `The page could not load its frame capture: ${error instanceof Error ? error.message : String(error)}`;
          if ((message as Request).type === "frame_request") {
            host.kernel.send({ type: "frame_error", id: (message as Request).id, kind: "unavailable", message: text });
          } else debug(text);
        }
      },
    );
  });
  return {
    dispose(): void {
      disposed = true;
      stop();
      capture?.dispose();
    },
  };
};
