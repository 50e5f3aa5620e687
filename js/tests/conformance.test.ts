// The shared conformance traces (conformance/traces/*.json) replayed on the TypeScript core.
// tests/unit/test_conformance.py replays the same files on the Python core; the format is
// described in conformance/README.md.

import { describe, expect, it } from "vitest";
import { DecartError, SessionEnded } from "../src/errors";
import { parseServer } from "../src/messages";
import { Session, type Action, type PeerState, type SessionOptions } from "../src/session";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface Step extends JsonObject {
  now: number;
  input: string;
}
interface Trace {
  title: string;
  core?: JsonObject;
  steps: Step[];
}

const files = import.meta.glob<Trace>("../../conformance/traces/*.json", { eager: true, import: "default" });
const traces = Object.entries(files)
  .map(([path, trace]) => [path.split("/").pop()!.replace(/\.json$/, ""), trace] as const)
  .sort(([a], [b]) => (a < b ? -1 : 1));

const INPUTS = [
  "start",
  "stop",
  "socket_opened",
  "socket_closed",
  "message",
  "local_offer",
  "local_candidate",
  "peer_state",
  "set_prompt",
  "set_image",
  "on_timer",
];
const ACTIONS = [
  "OpenSocket",
  "CloseSocket",
  "Send",
  "StartPeer",
  "ClosePeer",
  "JoinRoom",
  "ApplyAnswer",
  "AddRemoteCandidate",
  "RestartIce",
  "StateChanged",
  "Resolve",
  "Fail",
  "Emit",
];

/** `{"repeat": s, "times": n, "suffix": t}` stands for s repeated n times then t (a large image
 * in a small file), anywhere in a value. */
function expand(value: Json | undefined): Json | undefined {
  if (Array.isArray(value)) return value.map((item) => expand(item) as Json);
  if (value && typeof value === "object") {
    if ("repeat" in value && "times" in value) {
      return String(value["repeat"]).repeat(Number(value["times"])) + String(value["suffix"] ?? "");
    }
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, expand(item) as Json]));
  }
  return value;
}

function makeSession(core: JsonObject = {}): Session {
  const options: SessionOptions = {
    prompt: (core["prompt"] as string | null | undefined) ?? null,
    image: (expand(core["image"]) as string | null | undefined) ?? null,
    enhance: (core["enhance"] as boolean | undefined) ?? true,
  };
  if (core["prompt_ack_timeout"] !== undefined) options.promptAckTimeout = core["prompt_ack_timeout"] as number;
  if (core["image_ack_timeout"] !== undefined) options.imageAckTimeout = core["image_ack_timeout"] as number;
  if (core["initial_ack_timeout"] !== undefined) options.initialAckTimeout = core["initial_ack_timeout"] as number;
  if (core["connect_timeout"] !== undefined) options.connectTimeout = core["connect_timeout"] as number;
  if (core["retry_delays"] !== undefined) options.backoff = core["retry_delays"] as number[];
  if (core["transport"] !== undefined) options.transport = core["transport"] as "webrtc" | "livekit";
  if (core["room_info_timeout"] !== undefined) options.roomInfoTimeout = core["room_info_timeout"] as number;
  if (core["signaling_open_timeout"] !== undefined) options.signalingOpenTimeout = core["signaling_open_timeout"] as number;
  if (core["media_connect_timeout"] !== undefined) options.mediaConnectTimeout = core["media_connect_timeout"] as number;
  return new Session(options);
}

/** Give one input to the session; record the symbolic name of a new request. */
function feed(session: Session, step: Step, names: Map<number, string>): Action[] {
  const now = step.now;
  let result: { requestId: number; actions: Action[] };
  switch (step.input) {
    case "start":
      return session.start(now);
    case "stop":
      return session.stop(now);
    case "socket_opened":
      return session.socketOpened(now);
    case "socket_closed":
      return session.socketClosed(now, step["code"] as number | null, (step["reason"] as string | undefined) ?? "");
    case "message": {
      const message = parseServer(JSON.stringify(step["message"]));
      return message === null ? [] : session.message(now, message);
    }
    case "local_offer":
      return session.localOffer(now, step["sdp"] as string);
    case "local_candidate":
      return session.localCandidate(now, step["candidate"] as never);
    case "peer_state":
      return session.peerState(now, step["state"] as PeerState);
    case "on_timer":
      return session.onTimer(now);
    case "set_prompt":
      result = session.setPrompt(now, step["text"] as string | null, step["enhance"] as boolean | undefined);
      break;
    case "set_image":
      result = session.setImage(
        now,
        expand(step["image"]) as string | null,
        step["prompt"] as string | null | undefined,
        step["enhance"] as boolean | undefined,
      );
      break;
    default:
      throw new Error(`unknown input ${step.input}`);
  }
  const name = step["request"] as string;
  expect([...names.values()], `request name ${name} used twice`).not.toContain(name);
  names.set(result.requestId, name);
  return result.actions;
}

function errorJson(error: DecartError): JsonObject {
  const body: JsonObject = { kind: error.kind, message: error.message };
  if (error instanceof SessionEnded) body["reason"] = error.reason;
  return body;
}

/** The trace form of an action. */
function asJson(action: Action, names: Map<number, string>): JsonObject {
  const name = (id: number) => names.get(id) ?? `#${id}`;
  switch (action.kind) {
    case "OpenSocket":
      return { action: "OpenSocket", attempt: action.attempt };
    case "CloseSocket":
      return { action: "CloseSocket", code: action.code, reason: action.reason };
    case "Send":
      return { action: "Send", message: JSON.parse(JSON.stringify(action.message)) as Json };
    case "StartPeer":
    case "ClosePeer":
      return { action: action.kind };
    case "JoinRoom":
      return { action: "JoinRoom", url: action.url, token: action.token, room_name: action.roomName, session_id: action.sessionId };
    case "ApplyAnswer":
      return { action: "ApplyAnswer", sdp: action.sdp };
    case "AddRemoteCandidate":
      return { action: "AddRemoteCandidate", candidate: action.candidate as unknown as Json };
    case "RestartIce":
      return { action: "RestartIce", turn_config: action.turnConfig as unknown as Json };
    case "StateChanged":
      return { action: "StateChanged", state: action.state };
    case "Resolve":
      return { action: "Resolve", request: name(action.requestId), superseded: action.superseded };
    case "Fail":
      return { action: "Fail", request: name(action.requestId), error: errorJson(action.error) };
    case "Emit":
      if (action.name === "error") return { action: "Emit", name: "error", error: errorJson(action.value) };
      return { action: "Emit", name: action.name, value: action.value as unknown as Json };
  }
}

/** `actual` with its error cut to what `expected` checks (kind always; message if given;
 * `contains`: a substring of the message). */
function shapedLike(actual: JsonObject, expected: JsonObject | undefined): JsonObject {
  const spec = expected?.["error"];
  const error = actual["error"];
  if (!spec || typeof spec !== "object" || Array.isArray(spec) || !error || typeof error !== "object" || Array.isArray(error)) {
    return actual;
  }
  const shaped: JsonObject = {};
  for (const key of Object.keys(spec)) if (key in error) shaped[key] = error[key]!;
  const contains = spec["contains"];
  if (typeof contains === "string") {
    const message = String(error["message"]);
    shaped["contains"] = message.includes(contains) ? contains : `not in ${JSON.stringify(message)}`;
  }
  return { ...actual, error: shaped };
}

const round = (value: number | null): number | null => (value === null ? null : Math.round(value * 1e6) / 1e6);

/** The session's properties named in a step's `then`. */
function observe(session: Session, then: JsonObject): JsonObject {
  const seen: JsonObject = {};
  for (const key of Object.keys(then)) {
    if (key === "state") seen[key] = session.state;
    else if (key === "next_deadline") seen[key] = round(session.nextDeadline());
    else if (key === "accepted") seen[key] = { prompt: session.accepted.prompt, image: session.accepted.image };
    else if (key === "desired") seen[key] = { prompt: session.desired.prompt, image: session.desired.image };
    else if (key === "enhance") seen[key] = session.desired.enhance;
    else if (key === "generation_seconds") seen[key] = session.generationSeconds;
    else if (key === "session_id") seen[key] = session.sessionId;
    else if (key === "queue") seen[key] = session.queue ? { ...session.queue } : null;
    else throw new Error(`unknown property ${key} in 'then'`);
  }
  return seen;
}

function replay(trace: Trace): void {
  const session = makeSession(trace.core);
  const names = new Map<number, string>();
  trace.steps.forEach((step, index) => {
    const where = `step ${index} (${step.input} at ${step.now})`;
    const actions = feed(session, step, names).map((action) => asJson(action, names));
    const expected = expand(step["expect"]) as JsonObject[] | undefined;
    if (expected !== undefined) {
      expect(
        actions.map((action, i) => shapedLike(action, expected[i])),
        where,
      ).toEqual(expected);
    }
    const then = step["then"] as JsonObject | undefined;
    if (then !== undefined) {
      const wanted = { ...then };
      if (typeof wanted["next_deadline"] === "number") wanted["next_deadline"] = round(wanted["next_deadline"]);
      expect(observe(session, wanted), where).toEqual(wanted);
    }
  });
}

describe("conformance traces", () => {
  it.each(traces)("%s", (_name, trace) => replay(trace));

  it("cover every input and action", () => {
    expect(traces.length).toBeGreaterThanOrEqual(40);
    const steps = traces.flatMap(([, trace]) => trace.steps);
    expect(new Set(steps.map((step) => step.input))).toEqual(new Set(INPUTS));
    const expected = steps.flatMap((step) => (step["expect"] as JsonObject[] | undefined) ?? []);
    expect(new Set(expected.map((action) => action["action"]))).toEqual(new Set(ACTIONS));
    expect(traces.every(([, trace]) => Boolean(trace.title))).toBe(true);
  });
});
