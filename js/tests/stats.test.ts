import { describe, expect, it } from "vitest";
import { summarizeStats } from "../src/stats";

describe("summarizeStats", () => {
  it("prefers the browser's framesPerSecond and the nominated pair's RTT", () => {
    const { stats } = summarizeStats(
      [
        { type: "outbound-rtp", kind: "video", framesPerSecond: 30, framesEncoded: 90 },
        { type: "inbound-rtp", kind: "video", framesPerSecond: 24.44, framesDecoded: 70, bytesReceived: 1000 },
        { type: "inbound-rtp", kind: "audio", framesPerSecond: 99, bytesReceived: 99999 },
        { type: "candidate-pair", state: "succeeded", nominated: true, currentRoundTripTime: 0.0314 },
      ],
      1000,
      null,
    );
    expect(stats).toEqual({ fps_in: 30, fps_out: 24.4, rtt_ms: 31, bitrate_kbps: 0 });
  });

  it("derives rates from the previous sample", () => {
    const first = summarizeStats(
      [
        { type: "outbound-rtp", mediaType: "video", framesSent: 100 },
        { type: "inbound-rtp", kind: "video", framesDecoded: 50, bytesReceived: 10_000 },
        { type: "remote-inbound-rtp", kind: "video", roundTripTime: 0.1 },
      ],
      1000,
      null,
    );
    const second = summarizeStats(
      [
        { type: "outbound-rtp", mediaType: "video", framesSent: 130 },
        { type: "inbound-rtp", kind: "video", framesDecoded: 75, bytesReceived: 135_000 },
      ],
      2000,
      first.sample,
    );
    expect(second.stats).toEqual({ fps_in: 30, fps_out: 25, rtt_ms: null, bitrate_kbps: 1000 });
    expect(first.stats.rtt_ms).toBe(100);
  });
});
