// Turns a getStats() report into the `stats` traitlet: fps_in (frames we send to the model),
// fps_out (frames we get back), rtt_ms and bitrate_kbps (received). Rates come from the
// difference with the previous sample when the browser gives no framesPerSecond.

import type { Clock } from "./core_loop";

export const STATS_INTERVAL_MS = 1_000;

export interface Stats {
  fps_in: number;
  fps_out: number;
  rtt_ms: number | null;
  bitrate_kbps: number;
}

export interface StatsSample {
  atMs: number;
  framesSent: number;
  framesReceived: number;
  bytesReceived: number;
}

export type StatsEntry = Record<string, unknown> & { type: string };

const num = (value: unknown): number | null => (typeof value === "number" && Number.isFinite(value) ? value : null);
const round1 = (value: number): number => Math.round(value * 10) / 10;

export function summarizeStats(
  entries: Iterable<StatsEntry>,
  atMs: number,
  previous: StatsSample | null,
): { stats: Stats; sample: StatsSample } {
  let fpsIn: number | null = null;
  let fpsOut: number | null = null;
  let rttSeconds: number | null = null;
  const sample: StatsSample = { atMs, framesSent: 0, framesReceived: 0, bytesReceived: 0 };
  for (const entry of entries) {
    const video = entry["kind"] === "video" || entry["mediaType"] === "video";
    if (entry.type === "outbound-rtp" && video) {
      sample.framesSent += num(entry["framesEncoded"]) ?? num(entry["framesSent"]) ?? 0;
      fpsIn = num(entry["framesPerSecond"]) ?? fpsIn;
    } else if (entry.type === "inbound-rtp" && video) {
      sample.framesReceived += num(entry["framesDecoded"]) ?? num(entry["framesReceived"]) ?? 0;
      sample.bytesReceived += num(entry["bytesReceived"]) ?? 0;
      fpsOut = num(entry["framesPerSecond"]) ?? fpsOut;
    } else if (entry.type === "candidate-pair" && entry["state"] === "succeeded" && entry["nominated"] !== false) {
      rttSeconds = num(entry["currentRoundTripTime"]) ?? rttSeconds;
    } else if (entry.type === "remote-inbound-rtp" && rttSeconds === null) {
      rttSeconds = num(entry["roundTripTime"]);
    }
  }
  const elapsedMs = previous ? atMs - previous.atMs : 0;
  const rate = (now: number, before: number): number =>
    elapsedMs > 0 ? Math.max(0, ((now - before) * 1000) / elapsedMs) : 0;
  const stats: Stats = {
    fps_in: round1(fpsIn ?? rate(sample.framesSent, previous?.framesSent ?? 0)),
    fps_out: round1(fpsOut ?? rate(sample.framesReceived, previous?.framesReceived ?? 0)),
    rtt_ms: rttSeconds === null ? null : Math.round(rttSeconds * 1000),
    bitrate_kbps: Math.round(rate(sample.bytesReceived, previous?.bytesReceived ?? 0) * 8 / 1000),
  };
  return { stats, sample };
}

/**
 * Sample `entries()` every STATS_INTERVAL_MS until `signal` aborts, and `publish` each summary
 * (rates against the previous sample). A failed or empty sample is skipped.
 */
export function pollStats(
  clock: Clock,
  signal: AbortSignal,
  entries: () => Promise<Iterable<StatsEntry> | null>,
  publish: (stats: Stats) => void,
  onError: (error: unknown) => void,
): void {
  let sample: StatsSample | null = null;
  let timer: unknown = null;
  const poll = async (): Promise<void> => {
    const report = await entries();
    if (!report || signal.aborted) return;
    const summary = summarizeStats(report, clock.now() * 1000, sample);
    sample = summary.sample;
    publish(summary.stats);
  };
  const loop = (): void => {
    timer = clock.setTimeout(() => {
      poll()
        .catch(onError)
        .finally(() => {
          if (!signal.aborted) loop();
        });
    }, STATS_INTERVAL_MS);
  };
  signal.addEventListener("abort", () => clock.clearTimeout(timer), { once: true });
  loop();
}
