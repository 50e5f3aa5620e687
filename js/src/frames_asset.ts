// The entry of the frames asset (decart_widget/widget/static/frames.js): w.snapshot()'s frame
// capture on the page's <video>/canvas reader, loaded by lazy_frames.ts with the first request.

import { FrameCapture } from "./frame_capture";
import type { FramesHost } from "./lazy_frames";
import { videoFrameReader } from "./video_frames";

export function open(host: FramesHost): FrameCapture {
  return new FrameCapture({ ...host, reader: videoFrameReader });
}
