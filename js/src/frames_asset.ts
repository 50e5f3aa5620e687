// The entry of the frames asset (decart_widget/widget/static/frames.js): w.snapshot()'s frame
// capture on the page's <video>/canvas reader, and w.record()'s recorder (recorder.ts), loaded by
// lazy_frames.ts with the first request.

import { FrameCapture } from "./frame_capture";
import type { FramesHost } from "./lazy_frames";
import { Recorder } from "./recorder";
import { videoFrameReader } from "./video_frames";

export function open(host: FramesHost): { dispose(): void } {
  const capture = new FrameCapture({ ...host, reader: videoFrameReader });
  const recorder = new Recorder(host);
  return {
    dispose(): void {
      recorder.dispose();
      capture.dispose();
    },
  };
}
