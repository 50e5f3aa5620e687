import { describe, expect, it } from "vitest";
import { ConnectionLost } from "../src/errors";
import { PREVIEW_HOLD_MS, SourceManager } from "../src/source_manager";
import type { SourceKind, SourceOptions } from "../src/sources";
import { clockOf, FakeClock, FakeSource, flush } from "./fakes";

const OPTIONS: SourceOptions = { width: 1088, height: 624, fps: 30, deviceId: "", mirror: false, video: null };

/** A manager over fake sources; `gate` holds openings back until released by hand. */
function setup(kind: SourceKind = "camera") {
  const clock = new FakeClock();
  const sources: FakeSource[] = [];
  const ended: SourceKind[] = [];
  const gate: (() => void)[] = [];
  let hold = false;
  let output = false;
  let changes = 0;
  const manager = new SourceManager({
    clock: clockOf(clock),
    open: async (k, options) => {
      if (hold) await new Promise<void>((resolve) => gate.push(resolve));
      const source = new FakeSource(k, options);
      sources.push(source);
      return source;
    },
    settings: () => ({ kind, options: OPTIONS }),
    hasOutput: () => output,
    changed: () => changes++,
    ended: (k) => ended.push(k),
  });
  return {
    clock, sources, ended, gate, manager,
    holdOpenings: () => (hold = true),
    showOutput: () => (output = true),
    changes: () => changes,
  };
}

describe("SourceManager", () => {
  it("opens one source with the settings and keeps it", async () => {
    const w = setup();
    const source = await w.manager.ensure();
    expect(await w.manager.ensure()).toBe(source);
    expect(w.sources).toHaveLength(1);
    expect(w.sources[0]!.options).toEqual(OPTIONS);
    expect(w.manager.open).toBe(true);
    expect(w.manager.track).toBe(source.track);
    expect(w.manager.localStream).toBe(source.stream);
    expect(w.changes()).toBe(1);
  });

  it("holds the preview back until the output shows or PREVIEW_HOLD_MS passed", async () => {
    const w = setup();
    await w.manager.ensure();
    expect(w.manager.previewStream).toBeNull();
    w.clock.advance(PREVIEW_HOLD_MS / 1000 - 0.01);
    expect(w.manager.previewStream).toBeNull();
    w.clock.advance(0.01);
    expect(w.manager.previewStream).toBe(w.sources[0]!.stream);

    const v = setup();
    await v.manager.ensure();
    v.manager.showPreview(); // the output arrived first
    expect(v.manager.previewStream).toBe(v.sources[0]!.stream);
    expect(v.clock.pending()).toBe(0);
  });

  it("keeps the preview through a swap, not through a stop", async () => {
    const w = setup();
    await w.manager.ensure();
    w.manager.showPreview();
    w.manager.release(true);
    await w.manager.ensure();
    expect(w.manager.previewStream).toBe(w.sources[1]!.stream);
    w.manager.release();
    expect(w.sources.every((s) => s.stopped)).toBe(true);
    expect(w.manager.previewStream).toBeNull();
    expect(w.manager.localStream).toBeNull();
  });

  it("a new source under a running output shows at once", async () => {
    const w = setup();
    w.showOutput();
    await w.manager.ensure();
    expect(w.manager.previewStream).toBe(w.sources[0]!.stream);
  });

  it("a source released while it opened is stopped, and the opening rejects", async () => {
    const w = setup();
    w.holdOpenings();
    const opening = w.manager.ensure();
    await flush();
    w.manager.release();
    w.gate.shift()!();
    await expect(opening).rejects.toBeInstanceOf(ConnectionLost);
    expect(w.sources[0]!.stopped).toBe(true);
    expect(w.manager.open).toBe(false);
  });

  it("reports the open source's track ending, not an old one's", async () => {
    const w = setup();
    await w.manager.ensure();
    const old = w.sources[0]!;
    w.manager.release(true);
    await w.manager.ensure();
    old.fakeTrack.end();
    expect(w.ended).toEqual([]);
    w.sources[1]!.fakeTrack.end();
    expect(w.ended).toEqual(["camera"]);
  });
});
