import { describe, expect, it } from "vitest";
import { formatSeconds, formatStats, hintFor, present, type ViewInput } from "../src/present";

const base: ViewInput = {
  state: "disconnected",
  starting: false,
  lastError: "",
  lastErrorKind: "",
  seconds: 0,
  stats: null,
  source: "camera",
  hasRemote: false,
  hasPreview: false,
};

describe("present", () => {
  it("idle: a Start button and a click-to-start overlay", () => {
    const view = present(base);
    expect(view.pill).toEqual({ text: "Stopped", tone: "idle" });
    expect(view.button).toEqual({ label: "Start", action: "start" });
    expect(view.overlay).toBe("Start camera");
    expect(view.banner).toBeNull();
    expect(view.usage).toBe("");
    expect(present({ ...base, source: "synthetic" }).overlay).toBe("Start");
    expect(present({ ...base, source: "video" }).overlay).toBe("Play video");
    expect(present({ ...base, source: "screen" }).overlay).toBe("Share screen");
  });

  it.each([
    ["connecting", "Connecting…", "busy"],
    ["reconnecting", "Reconnecting…", "busy"],
    ["connected", "Connected", "ok"],
    ["generating", "Live", "live"],
  ] as const)("the pill follows %s", (state, text, tone) => {
    const view = present({ ...base, state });
    expect(view.pill).toEqual({ text, tone });
    expect(view.button.action).toBe("stop");
    expect(view.overlay).toBeNull();
  });

  it("shows the camera starting", () => {
    const view = present({ ...base, starting: true });
    expect(view.pill).toEqual({ text: "Starting camera…", tone: "busy" });
    expect(view.button).toEqual({ label: "Stop", action: "stop" });
    expect(view.overlay).toBeNull();
  });

  it("the output placeholder disappears once video flows", () => {
    expect(present({ ...base, state: "generating" }).outputPlaceholder).toMatch(/Waiting/);
    expect(present({ ...base, state: "generating", hasRemote: true }).outputPlaceholder).toBe("");
    expect(present({ ...base, state: "reconnecting", hasRemote: true }).outputPlaceholder).toMatch(/reconnecting/);
  });

  it("says what the input pane waits for while its preview is held back", () => {
    expect(present({ ...base, state: "disconnected" }).inputPlaceholder).toBe("");
    expect(present({ ...base, state: "disconnected", starting: true, source: "camera" }).inputPlaceholder).toBe("Opening the camera…");
    expect(present({ ...base, state: "disconnected", starting: true, source: "synthetic" }).inputPlaceholder).toBe("Starting…");
    expect(present({ ...base, state: "connecting" }).inputPlaceholder).toMatch(/Shown with the transformed video/);
    expect(present({ ...base, state: "connecting", hasPreview: true }).inputPlaceholder).toBe("");
    expect(present({ ...base, state: "reconnecting", hasPreview: true }).inputPlaceholder).toBe("");
  });

  it.each([
    ["authentication", /DECART_API_KEY/],
    ["moderation", /another prompt/],
    ["credits", /credits/],
    ["concurrency", /Another session/],
    ["connection", /network/],
    ["ack_timeout", /try again/],
    ["session_ended", /new session/],
    ["something_new", /try again/],
  ])("every error kind has an actionable hint: %s", (kind, hint) => {
    const view = present({ ...base, lastError: "Something failed", lastErrorKind: kind });
    expect(view.banner).toEqual({ message: "Something failed", hint: hintFor(kind) });
    expect(view.banner!.hint).toMatch(hint);
    expect(view.pill).toEqual({ text: "Error", tone: "error" });
  });

  it("shows the place in the service's queue while the session waits, and nothing of it after", () => {
    const queued = { ...base, state: "connecting" as const, queue: { position: 3, size: 7 } };
    expect(present(queued).pill).toEqual({ text: "In line: 3 of 7", tone: "busy" });
    expect(present(queued).outputPlaceholder).toMatch(/^In line: 3 of 7: /);
    expect(present({ ...queued, state: "reconnecting" }).pill.text).toBe("In line: 3 of 7");
    expect(present({ ...queued, queue: null }).pill.text).toBe("Connecting…");
    expect(present({ ...queued, queue: { position: 2, size: null } }).pill.text).toBe("In line: 2");
    expect(present({ ...queued, state: "connected" }).pill.text).toBe("Connected");
  });

  it("shows core error phrases as sentences", () => {
    expect(present({ ...base, lastError: "connection lost after 5 retries: boom", lastErrorKind: "connection" }).banner?.message).toBe(
      "Connection lost after 5 retries: boom",
    );
  });

  it("capture errors carry their advice in the message itself", () => {
    for (const kind of ["insecure_context", "permission", "camera"]) {
      expect(present({ ...base, lastError: "X", lastErrorKind: kind }).banner).toEqual({ message: "X", hint: "" });
    }
  });

  it("formats usage and stats", () => {
    expect(formatSeconds(0)).toBe("0:00");
    expect(formatSeconds(65)).toBe("1:05");
    expect(formatSeconds(3725)).toBe("1:02:05");
    expect(present({ ...base, state: "generating", seconds: 65 }).usage).toBe("1:05 used");
    expect(formatStats({ fps_in: 30, fps_out: 29.5, rtt_ms: 42, bitrate_kbps: 1500 })).toBe(
      "30 fps in · 29.5 fps out · 42 ms · 1500 kbps",
    );
    expect(formatStats({ fps_in: 30, fps_out: 29, rtt_ms: null, bitrate_kbps: 0 })).toBe("30 fps in · 29 fps out · 0 kbps");
    expect(formatStats({})).toBe("");
    expect(present({ ...base, stats: { fps_in: 1, fps_out: 1, rtt_ms: 1, bitrate_kbps: 1 } }).stats).toBe("");
  });
});
