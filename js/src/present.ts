// What the view shows for a given state, as plain data: the status pill, the start/stop button,
// the error banner with what to do about it, the usage and stats lines. Kept free of the DOM
// so every state can be tested.

import type { ConnectionState } from "./session";
import type { SourceKind } from "./sources";
import type { Stats } from "./stats";

export type Tone = "idle" | "busy" | "ok" | "live" | "error";

export interface ViewInput {
  state: ConnectionState;
  starting: boolean;
  lastError: string;
  lastErrorKind: string;
  seconds: number;
  stats: Partial<Stats> | null;
  source: SourceKind;
  hasRemote: boolean;
  /** whether the input preview shows (it waits for the output while a session starts) */
  hasPreview: boolean;
  /** the place in the service's queue, while the session waits in it */
  queue?: { position: number; size: number | null } | null;
}

export interface Presentation {
  pill: { text: string; tone: Tone };
  button: { label: string; action: "start" | "stop" };
  banner: { message: string; hint: string } | null;
  usage: string;
  stats: string;
  /** the call to action over the input pane, or null when capture runs */
  overlay: string | null;
  /** text over the output pane, or "" once the transformed video shows */
  outputPlaceholder: string;
  /** text over the input pane while capture starts and its preview is held back, else "" */
  inputPlaceholder: string;
}

// What to do next, by error kind. Capture errors are written by the front end with their own
// specific advice in the message, so they need none here.
const HINTS: Record<string, string> = {
  insecure_context: "",
  permission: "",
  camera: "",
  kernel: "",
  authentication: "Check DECART_API_KEY (or the token's allowed models and origins), then press Start.",
  moderation: "Try another prompt or image: the previous one stays in force.",
  credits: "Add credits to the Decart account, then press Start.",
  concurrency: "Another session uses this key: stop it (w.stop() or close the other tab), then press Start.",
  ack_timeout: "The service did not answer in time: try again.",
  connection: "Check the network and the service, then press Start.",
  session_ended: "Press Start for a new session.",
  invalid_input: "Fix the value and try again.",
  protocol: "The service sent something unexpected: press Start to reconnect.",
};

export function hintFor(kind: string): string {
  return HINTS[kind] ?? "Press Start to try again.";
}

// Core error texts are lowercase phrases (as in Python); the banner shows a sentence.
const capitalise = (text: string): string => text.charAt(0).toUpperCase() + text.slice(1);

export function formatSeconds(total: number): string {
  const seconds = Math.max(0, Math.floor(total));
  const minutes = Math.floor(seconds / 60);
  const rest = String(seconds % 60).padStart(2, "0");
  return minutes >= 60 ? `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

export function formatStats(stats: Partial<Stats> | null): string {
  if (!stats || stats.fps_in === undefined) return "";
  const parts = [`${stats.fps_in} fps in`, `${stats.fps_out ?? 0} fps out`];
  if (stats.rtt_ms !== null && stats.rtt_ms !== undefined) parts.push(`${stats.rtt_ms} ms`);
  parts.push(`${stats.bitrate_kbps ?? 0} kbps`);
  return parts.join(" · ");
}

const START_LABELS: Record<SourceKind, string> = {
  camera: "Start camera",
  screen: "Share screen",
  video: "Play video",
  synthetic: "Start",
  python: "Start",
};

const STARTING_LABELS: Record<SourceKind, string> = {
  camera: "Starting camera…",
  screen: "Choosing a screen…",
  video: "Loading video…",
  synthetic: "Starting…",
  python: "Starting…",
};

/** "In line: 3 of 7" while the session waits for the service, else null. */
export function queueText(input: ViewInput): string | null {
  const queue = input.queue;
  if (!queue || (input.state !== "connecting" && input.state !== "reconnecting")) return null;
  return `In line: ${queue.position}${queue.size ? ` of ${queue.size}` : ""}`;
}

function pill(input: ViewInput): Presentation["pill"] {
  if (input.starting) return { text: STARTING_LABELS[input.source] ?? "Starting…", tone: "busy" };
  const queued = queueText(input);
  if (queued) return { text: queued, tone: "busy" };
  switch (input.state) {
    case "connecting":
      return { text: "Connecting…", tone: "busy" };
    case "reconnecting":
      return { text: "Reconnecting…", tone: "busy" };
    case "connected":
      return { text: "Connected", tone: "ok" };
    case "generating":
      return { text: "Live", tone: "live" };
    default:
      return input.lastError ? { text: "Error", tone: "error" } : { text: "Stopped", tone: "idle" };
  }
}

function outputPlaceholder(input: ViewInput): string {
  const queued = queueText(input);
  if (queued) return `${queued}: the session starts when a place is free…`;
  switch (input.state) {
    case "connecting":
      return "Connecting…";
    case "reconnecting":
      return "Connection lost, reconnecting…";
    case "connected":
    case "generating":
      return input.hasRemote ? "" : "Waiting for the transformed video…";
    default:
      return "The transformed video appears here";
  }
}

function inputPlaceholder(input: ViewInput, idle: boolean): string {
  if (idle || input.hasPreview) return "";
  if (input.starting) return input.source === "camera" ? "Opening the camera…" : "Starting…";
  return input.state === "disconnected" ? "" : "Shown with the transformed video…";
}

export function present(input: ViewInput): Presentation {
  const idle = input.state === "disconnected" && !input.starting;
  return {
    pill: pill(input),
    button: idle ? { label: "Start", action: "start" } : { label: "Stop", action: "stop" },
    banner: input.lastError ? { message: capitalise(input.lastError), hint: hintFor(input.lastErrorKind) } : null,
    usage: input.seconds > 0 || input.state === "generating" ? `${formatSeconds(input.seconds)} used` : "",
    stats: input.state === "disconnected" ? "" : formatStats(input.stats),
    overlay: idle ? START_LABELS[input.source] ?? "Start" : null,
    outputPlaceholder: outputPlaceholder(input),
    inputPlaceholder: inputPlaceholder(input, idle),
  };
}
