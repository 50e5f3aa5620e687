import { describe, expect, it } from "vitest";
import {
  AckTimeout,
  AuthenticationError,
  ConcurrencyLimit,
  ConnectionLost,
  type DecartError,
  InsufficientCredits,
  ModerationError,
  SessionEnded,
} from "../src/errors";
import type { ServerMessage } from "../src/messages";
import { BACKOFF, Session, type Action, type MediaState } from "../src/session";

const promptAck = (prompt: string, success = true, error: string | null = null): ServerMessage => ({
  type: "prompt_ack",
  prompt,
  success,
  error,
});
const imageAck = (success = true, error: string | null = null): ServerMessage => ({
  type: "set_image_ack",
  success,
  error,
});

const kinds = (actions: Action[]): string[] => actions.map((a) => a.kind);
const sent = (actions: Action[]) => actions.flatMap((a) => (a.kind === "Send" ? [a.message] : []));
const states = (actions: Action[]) => actions.flatMap((a) => (a.kind === "StateChanged" ? [a.state] : []));
const resolved = (actions: Action[]) =>
  actions.flatMap((a) => (a.kind === "Resolve" ? [[a.requestId, a.superseded] as const] : []));
const rejected = (actions: Action[]) => actions.flatMap((a) => (a.kind === "Reject" ? [a] : []));
const emitted = (actions: Action[], name: string) =>
  actions.flatMap((a) => (a.kind === "Emit" && a.name === name ? [a.value] : []));

/** A session that went through the whole handshake and is generating. */
function generating(initial: Partial<MediaState> = { prompt: "Anime" }, now = 0): Session {
  const session = new Session(initial);
  session.start(now);
  const opened = session.socketOpened(now);
  const first = sent(opened)[0]!;
  session.message(now, first.type === "prompt" ? promptAck(first.prompt) : imageAck());
  session.peerState(now, "connected");
  session.message(now, { type: "generation_started" });
  expect(session.state).toBe("generating");
  return session;
}

describe("handshake", () => {
  it("sends the initial prompt, waits for its ack, then starts the peer", () => {
    const session = new Session({ prompt: "Anime style", enhance: false });
    expect(session.state).toBe("disconnected");

    const started = session.start(0);
    expect(started).toEqual([
      { kind: "StateChanged", state: "connecting" },
      { kind: "OpenSocket", attempt: 0 },
    ]);

    const opened = session.socketOpened(0.1);
    expect(sent(opened)).toEqual([{ type: "prompt", prompt: "Anime style", enhance_prompt: false }]);
    expect(kinds(opened)).not.toContain("StartPeer");
    expect(session.nextDeadline()).toBeCloseTo(30.1);

    const acked = session.message(0.2, promptAck("Anime style"));
    expect(kinds(acked)).toEqual(["StartPeer"]);
    expect(session.accepted.prompt).toBe("Anime style");

    expect(sent(session.localOffer(0.3, "v=0 offer"))).toEqual([{ type: "offer", sdp: "v=0 offer" }]);
    const candidate = { candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host", sdpMid: "0", sdpMLineIndex: 0 };
    expect(sent(session.localCandidate(0.3, candidate))).toEqual([{ type: "ice-candidate", candidate }]);
    expect(sent(session.localCandidate(0.3, null))).toEqual([{ type: "ice-candidate", candidate: null }]);

    expect(session.message(0.4, { type: "answer", sdp: "v=0 answer" })).toEqual([
      { kind: "ApplyAnswer", sdp: "v=0 answer" },
    ]);
    expect(session.message(0.4, { type: "ice-candidate", candidate })).toEqual([
      { kind: "AddRemoteCandidate", candidate },
    ]);
    expect(session.message(0.4, { type: "session_id", session_id: "s1", server_ip: null, server_port: null })).toEqual([
      { kind: "Emit", name: "session_id", value: "s1" },
    ]);

    expect(states(session.peerState(0.5, "connected"))).toEqual(["connected"]);
    expect(states(session.message(0.6, { type: "generation_started" }))).toEqual(["generating"]);
    expect(session.nextDeadline()).toBeNull();
  });

  it("sends set_image with the prompt when there is an image", () => {
    const session = new Session({ prompt: "Noir", image: "aGVsbG8=" });
    session.start(0);
    expect(sent(session.socketOpened(0))).toEqual([
      { type: "set_image", image_data: "aGVsbG8=", prompt: "Noir", enhance_prompt: true },
    ]);
    expect(kinds(session.message(0, imageAck()))).toEqual(["StartPeer"]);
    expect(session.accepted).toEqual({ prompt: "Noir", image: "aGVsbG8=", enhance: true });
  });

  it("sends the explicit passthrough when there is neither", () => {
    const session = new Session();
    session.start(0);
    expect(sent(session.socketOpened(0))).toEqual([
      { type: "set_image", image_data: null, prompt: null, enhance_prompt: true },
    ]);
  });

  it("does not send peer frames before the handshake ack", () => {
    const session = new Session({ prompt: "A" });
    session.start(0);
    session.socketOpened(0);
    expect(session.localOffer(0, "sdp")).toEqual([]);
    expect(session.message(0, { type: "answer", sdp: "x" })).toEqual([]);
  });

  it("settles requests made while connecting with the handshake ack", () => {
    const session = new Session({ prompt: "A" });
    session.start(0);
    const first = session.setPrompt(0, "B");
    const second = session.setPrompt(0, "C");
    expect(resolved(second.actions)).toEqual([[first.requestId, true]]);
    expect(sent(session.socketOpened(1))).toEqual([{ type: "prompt", prompt: "C", enhance_prompt: true }]);
    expect(resolved(session.message(1, promptAck("C")))).toEqual([[second.requestId, false]]);
  });

  it("a first generation_tick also means generating", () => {
    const session = new Session({ prompt: "A" });
    session.start(0);
    session.socketOpened(0);
    session.message(0, promptAck("A"));
    const actions = session.message(1, { type: "generation_tick", seconds: 2.7 });
    expect(states(actions)).toEqual(["generating"]);
    expect(emitted(actions, "generation_tick")).toEqual([2]);
  });

  it("requests while disconnected only change the desired state", () => {
    const session = new Session();
    const { requestId, actions } = session.setPrompt(0, "Later");
    expect(actions).toEqual([{ kind: "Resolve", requestId, superseded: false }]);
    expect(session.desired.prompt).toBe("Later");
    session.start(0);
    expect(sent(session.socketOpened(0))).toEqual([{ type: "prompt", prompt: "Later", enhance_prompt: true }]);
  });
});

describe("updates and acks", () => {
  it("matches prompt_ack by exact prompt text", () => {
    const session = generating();
    const { requestId, actions } = session.setPrompt(10, "Cyberpunk");
    expect(sent(actions)).toEqual([{ type: "prompt", prompt: "Cyberpunk", enhance_prompt: true }]);
    expect(session.message(11, promptAck("cyberpunk"))).toEqual([]);
    expect(session.message(11, promptAck("Anime"))).toEqual([]);
    expect(resolved(session.message(11, promptAck("Cyberpunk")))).toEqual([[requestId, false]]);
    expect(session.accepted.prompt).toBe("Cyberpunk");
  });

  it("matches set_image_ack to the oldest pending set_image, in order", () => {
    const session = generating();
    const first = session.setImage(0, "AAAA");
    const second = session.setImage(0, "BBBB");
    expect(sent(first.actions)).toEqual([{ type: "set_image", image_data: "AAAA", prompt: "Anime", enhance_prompt: true }]);
    expect(sent(second.actions)).toEqual([]);
    const afterFirst = session.message(1, imageAck());
    expect(resolved(afterFirst)).toEqual([[first.requestId, false]]);
    expect(sent(afterFirst)).toEqual([{ type: "set_image", image_data: "BBBB", prompt: "Anime", enhance_prompt: true }]);
    expect(session.accepted.image).toBe("AAAA");
    expect(resolved(session.message(2, imageAck()))).toEqual([[second.requestId, false]]);
    expect(session.accepted.image).toBe("BBBB");
  });

  it("ignores a set_image_ack while a prompt is in flight", () => {
    const session = generating();
    session.setPrompt(0, "X");
    expect(session.message(0, imageAck())).toEqual([]);
  });

  it("times out a prompt after 15 s", () => {
    const session = generating();
    const { requestId } = session.setPrompt(100, "Slow");
    expect(session.nextDeadline()).toBe(115);
    expect(session.onTimer(114.9)).toEqual([]);
    const [rejection] = rejected(session.onTimer(115));
    expect(rejection?.requestId).toBe(requestId);
    expect(rejection?.error).toBeInstanceOf(AckTimeout);
    expect(rejection?.error.kind).toBe("ack_timeout");
    expect(session.nextDeadline()).toBeNull();
    expect(session.state).toBe("generating");
  });

  it("times out an image after 30 s, sends what was queued, and still takes a late ack", () => {
    const session = generating();
    const image = session.setImage(100, "AAAA");
    const prompt = session.setPrompt(101, "Next");
    expect(session.nextDeadline()).toBe(130);
    const actions = session.onTimer(130);
    expect(rejected(actions).map((r) => r.requestId)).toEqual([image.requestId]);
    expect(rejected(actions)[0]?.error).toBeInstanceOf(AckTimeout);
    // the image was never confirmed, so the desired state drops it
    expect(sent(actions)).toEqual([{ type: "prompt", prompt: "Next", enhance_prompt: true }]);
    expect(session.desired.image).toBeNull();
    expect(session.nextDeadline()).toBe(145);
    // the late ack matches the timed-out set_image (FIFO), not the prompt in flight
    expect(session.message(131, imageAck())).toEqual([]);
    expect(session.accepted.image).toBe("AAAA");
    expect(resolved(session.message(131, promptAck("Next")))).toEqual([[prompt.requestId, false]]);
    expect(session.accepted).toEqual({ prompt: "Next", image: "AAAA", enhance: true });
  });

  it("coalesces a burst: 50 changes send at most two and apply the last", () => {
    const session = generating();
    const frames = [];
    const ids: number[] = [];
    const superseded: number[] = [];
    for (let i = 0; i < 50; i++) {
      const { requestId, actions } = session.setPrompt(1, `style ${i}`);
      ids.push(requestId);
      frames.push(...sent(actions));
      superseded.push(...resolved(actions).filter(([, s]) => s).map(([id]) => id));
    }
    expect(frames).toHaveLength(1);
    expect(superseded).toEqual(ids.slice(1, 49));
    const afterAck = session.message(2, promptAck("style 0"));
    expect(sent(afterAck)).toEqual([{ type: "prompt", prompt: "style 49", enhance_prompt: true }]);
    expect(resolved(session.message(3, promptAck("style 49")))).toEqual([[ids[49], false]]);
    expect(session.accepted.prompt).toBe("style 49");
  });

  it("keeps the image when a prompt supersedes a queued image", () => {
    const session = generating();
    session.setPrompt(0, "first");
    session.setImage(0, "IMG");
    session.setPrompt(0, "second");
    expect(sent(session.message(0, promptAck("first")))).toEqual([
      { type: "set_image", image_data: "IMG", prompt: "second", enhance_prompt: true },
    ]);
  });

  it("rejects a moderated prompt and reverts the desired state to the accepted one", () => {
    const session = generating();
    const { requestId } = session.setPrompt(0, "forbidden");
    const actions = session.message(0, promptAck("forbidden", false, "Prompt rejected by moderation"));
    const [rejection] = rejected(actions);
    expect(rejection?.requestId).toBe(requestId);
    expect(rejection?.error).toBeInstanceOf(ModerationError);
    expect(rejection?.error.message).toBe("Prompt rejected by moderation");
    expect(session.desired.prompt).toBe("Anime");
    expect(session.accepted.prompt).toBe("Anime");
    expect(session.state).toBe("generating");
  });

  it("a failed ack without moderation words is still a typed rejection", () => {
    const session = generating();
    session.setImage(0, "BAD");
    const [rejection] = rejected(session.message(0, imageAck(false, "something odd")));
    expect(rejection?.error.kind).toBe("moderation");
    expect(session.desired.image).toBeNull();
  });

  it("keeps a newer desired prompt when an older one is rejected", () => {
    const session = generating();
    session.setPrompt(0, "bad");
    session.setPrompt(0, "good");
    const actions = session.message(0, promptAck("bad", false, "moderation"));
    expect(session.desired.prompt).toBe("good");
    expect(sent(actions)).toEqual([{ type: "prompt", prompt: "good", enhance_prompt: true }]);
  });

  it("a rejected initial state is reported and the peer still starts", () => {
    const session = new Session({ prompt: "forbidden" });
    session.start(0);
    session.socketOpened(0);
    const actions = session.message(0, promptAck("forbidden", false, "Rejected by moderation"));
    expect(kinds(actions)).toEqual(["Emit", "StartPeer"]);
    expect(emitted(actions, "error")[0]).toBeInstanceOf(ModerationError);
    expect(session.desired.prompt).toBeNull();
  });
});

describe("reconnect", () => {
  it("backs off 1, 2, 4, 8, 10 s, then gives up with ConnectionLost", () => {
    const session = generating();
    let now = 50;
    const lost = session.socketClosed(now, 1006, "");
    expect(kinds(lost)).toEqual(["ClosePeer", "StateChanged"]);
    expect(session.state).toBe("reconnecting");
    const delays: number[] = [];
    for (let attempt = 1; attempt <= BACKOFF.length; attempt++) {
      const deadline = session.nextDeadline()!;
      delays.push(deadline - now);
      expect(session.onTimer(deadline - 0.01)).toEqual([]);
      now = deadline;
      expect(session.onTimer(now)).toEqual([{ kind: "OpenSocket", attempt }]);
      const failed = session.socketClosed(now, null);
      if (attempt < BACKOFF.length) expect(session.state).toBe("reconnecting");
      else {
        expect(states(failed)).toEqual(["disconnected"]);
        const [error] = emitted(failed, "error");
        expect(error).toBeInstanceOf(ConnectionLost);
      }
    }
    expect(delays).toEqual([1, 2, 4, 8, 10]);
    expect(session.nextDeadline()).toBeNull();
  });

  it("replays the latest prompt and image after a reconnect", () => {
    const session = generating({ prompt: "Anime" });
    session.setPrompt(10, "Noir");
    session.message(10, promptAck("Noir"));
    const inFlight = session.setPrompt(11, "Neon"); // lost with the socket
    session.socketClosed(12, 1006, "");
    const duringLoss = session.setImage(12.5, "REF");
    expect(sent(duringLoss.actions)).toEqual([]);
    session.onTimer(13);
    const replay = sent(session.socketOpened(13.2));
    expect(replay).toEqual([{ type: "set_image", image_data: "REF", prompt: "Neon", enhance_prompt: true }]);
    const acked = session.message(13.3, imageAck());
    // the prompt lost in flight and the image set during the loss settle with the replay
    expect(resolved(acked)).toEqual([
      [inFlight.requestId, false],
      [duringLoss.requestId, false],
    ]);
    expect(kinds(acked)).toContain("StartPeer");
    expect(session.accepted).toEqual({ prompt: "Neon", image: "REF", enhance: true });
    expect(states(session.peerState(13.5, "connected"))).toEqual(["connected"]);
    expect(states(session.message(14, { type: "generation_started" }))).toEqual(["generating"]);
  });

  it("keeps a request that was in flight pending until the replay's ack", () => {
    const session = generating();
    const { requestId } = session.setPrompt(1, "Sketch");
    const lost = session.socketClosed(2, 1011, "internal error");
    expect(rejected(lost)).toEqual([]);
    session.onTimer(3);
    expect(sent(session.socketOpened(3))).toEqual([{ type: "prompt", prompt: "Sketch", enhance_prompt: true }]);
    expect(resolved(session.message(3, promptAck("Sketch")))).toEqual([[requestId, false]]);
  });

  it("resets the retry counter once generating again", () => {
    const session = generating();
    session.socketClosed(0, 1006);
    session.onTimer(1);
    session.socketClosed(1, null);
    expect(session.retriesUsed).toBe(2);
    session.onTimer(3);
    session.socketOpened(3);
    session.message(3, promptAck("Anime"));
    session.message(4, { type: "generation_tick", seconds: 1 });
    expect(session.retriesUsed).toBe(0);
    session.socketClosed(10, 1006);
    expect(session.nextDeadline()).toBe(11);
  });

  it("treats a failed peer connection as a loss", () => {
    const session = generating();
    const actions = session.peerState(5, "failed");
    expect(kinds(actions)).toEqual(["CloseSocket", "ClosePeer", "StateChanged"]);
    expect(session.state).toBe("reconnecting");
    expect(session.nextDeadline()).toBe(6);
  });

  it("a transient 'disconnected' peer state is left to the browser", () => {
    const session = generating();
    expect(session.peerState(5, "disconnected")).toEqual([]);
    expect(session.state).toBe("generating");
  });

  it("reconnects when the initial-state ack never comes", () => {
    const session = new Session({ prompt: "A" });
    session.start(0);
    session.socketOpened(0);
    const actions = session.onTimer(30);
    expect(kinds(actions)).toEqual(["CloseSocket", "StateChanged"]);
    expect(session.state).toBe("reconnecting");
  });

  it("the first connection failing is retried too", () => {
    const session = new Session({ prompt: "A" });
    session.start(0);
    expect(states(session.socketClosed(0.5, null))).toEqual(["reconnecting"]);
    expect(session.onTimer(1.5)).toEqual([{ kind: "OpenSocket", attempt: 1 }]);
  });
});

describe("errors that are never retried", () => {
  it.each([1013, 4013])("close %i is a concurrency limit at once (4013: via the proxy)", (code) => {
    const session = new Session({ prompt: "A" });
    session.start(0);
    session.socketOpened(0);
    const actions = session.socketClosed(0.2, code, "Concurrent session limit reached.");
    expect(states(actions)).toEqual(["disconnected"]);
    const [error] = emitted(actions, "error");
    expect(error).toBeInstanceOf(ConcurrencyLimit);
    expect(kinds(actions)).not.toContain("OpenSocket");
    expect(session.nextDeadline()).toBeNull();
  });

  it("a permanent error message ends the session", () => {
    const session = generating();
    const { requestId } = session.setPrompt(0, "pending");
    const actions = session.message(1, { type: "error", error: "Invalid API key" });
    expect(kinds(actions)).toEqual(["CloseSocket", "ClosePeer", "Reject", "Emit", "StateChanged"]);
    const [error] = emitted(actions, "error");
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(rejected(actions)[0]?.requestId).toBe(requestId);
    expect(session.nextDeadline()).toBeNull();
  });

  it("a permanent close reason ends the session", () => {
    const session = generating();
    const actions = session.socketClosed(1, 4001, "unauthorized");
    expect(states(actions)).toEqual(["disconnected"]);
    expect(emitted(actions, "error")[0]).toBeInstanceOf(AuthenticationError);
  });

  it("a passing server error is reported and the session goes on", () => {
    const session = generating();
    const actions = session.message(1, { type: "error", error: "upstream_timeout" });
    expect(kinds(actions)).toEqual(["Emit"]);
    expect(session.state).toBe("generating");
  });

  it.each([
    ["insufficient_credits", InsufficientCredits, "credits"],
    ["timeout", SessionEnded, "session_ended"],
    ["moderation_violation", ModerationError, "moderation"],
    ["error", SessionEnded, "session_ended"],
  ])("generation_ended %s ends with a typed error", (reason, ErrorClass, kind) => {
    const session = generating();
    const actions = session.message(40, { type: "generation_ended", seconds: 42, reason });
    expect(emitted(actions, "generation_tick")).toEqual([42]);
    expect(emitted(actions, "generation_ended")).toEqual([reason]);
    const [error] = emitted(actions, "error") as DecartError[];
    expect(error).toBeInstanceOf(ErrorClass);
    expect(error?.kind).toBe(kind);
    expect(session.state).toBe("disconnected");
    expect(session.nextDeadline()).toBeNull();
  });

  it("generation_ended disconnect is a clean end", () => {
    const session = generating();
    const actions = session.message(40, { type: "generation_ended", seconds: 42, reason: "disconnect" });
    expect(emitted(actions, "error")).toEqual([]);
    expect(session.state).toBe("disconnected");
  });
});

describe("details shared with the Python core", () => {
  it("gives up connecting after 300 s", () => {
    const session = new Session({ prompt: "A" });
    session.start(0);
    session.socketOpened(1);
    session.message(1, promptAck("A"));
    expect(session.nextDeadline()).toBe(300);
    const actions = session.onTimer(300);
    expect(states(actions)).toEqual(["disconnected"]);
    expect(emitted(actions, "error")[0]).toBeInstanceOf(ConnectionLost);
  });

  it("the connect deadline ends once connected, and restarts on a loss", () => {
    const session = generating({ prompt: "A" }, 0);
    expect(session.nextDeadline()).toBeNull();
    session.peerState(50, "failed");
    expect(session.nextDeadline()).toBe(51);
    session.onTimer(51);
    session.socketClosed(51, null);
    session.onTimer(53);
    session.socketClosed(53, null);
    session.onTimer(57);
    session.socketClosed(57, null);
    session.onTimer(65);
    session.socketClosed(65, null);
    session.onTimer(75);
    expect(session.nextDeadline()).toBe(350);
  });

  it("holds remote candidates that arrive before the answer", () => {
    const session = new Session({ prompt: "A" });
    session.start(0);
    session.socketOpened(0);
    session.message(0, promptAck("A"));
    const early = { candidate: "candidate:early" };
    expect(session.message(0, { type: "ice-candidate", candidate: early })).toEqual([]);
    expect(session.message(0, { type: "answer", sdp: "answer" })).toEqual([
      { kind: "ApplyAnswer", sdp: "answer" },
      { kind: "AddRemoteCandidate", candidate: early },
    ]);
    expect(session.message(0, { type: "answer", sdp: "again" })).toEqual([]);
    expect(session.message(0, { type: "ice-restart", turn_config: null })).toEqual([{ kind: "RestartIce", turnConfig: null }]);
    expect(session.message(0, { type: "answer", sdp: "after restart" })).toEqual([{ kind: "ApplyAnswer", sdp: "after restart" }]);
  });

  it("a prompt does not supersede a queued image: both settle with one set_image", () => {
    const session = generating();
    session.setPrompt(0, "first");
    const image = session.setImage(0, "IMG");
    const prompt = session.setPrompt(0, "second");
    expect(resolved(prompt.actions)).toEqual([]);
    const actions = session.message(0, promptAck("first"));
    expect(sent(actions)).toEqual([{ type: "set_image", image_data: "IMG", prompt: "second", enhance_prompt: true }]);
    expect(resolved(session.message(1, imageAck()))).toEqual([
      [image.requestId, false],
      [prompt.requestId, false],
    ]);
  });

  it("an unmatched successful prompt_ack still moves the accepted prompt", () => {
    const session = generating();
    session.message(0, promptAck("set elsewhere"));
    expect(session.accepted.prompt).toBe("set elsewhere");
  });

  it("blank prompts mean no prompt; images are checked", () => {
    const session = new Session({ prompt: "   " });
    expect(session.desired.prompt).toBeNull();
    session.setImage(0, "data:image/png;base64,QUJD");
    expect(session.desired.image).toBe("QUJD");
    const tooBig = session.setImage(0, "A".repeat(14_000_000));
    expect(rejected(tooBig.actions)[0]?.error.kind).toBe("invalid_input");
    expect(rejected(session.setImage(0, "data:image/png,raw").actions)[0]?.error.message).toMatch(/base64/);
    expect(rejected(session.setImage(0, "  ").actions)[0]?.error.message).toMatch(/empty/);
    expect(session.desired.image).toBe("QUJD");
  });

  it("a replay rejected after a reconnect sends the last accepted state again", () => {
    const session = generating({ prompt: "Anime" });
    session.setPrompt(1, "Risky");
    session.socketClosed(2, 1006); // lost before the ack
    session.onTimer(3);
    expect(sent(session.socketOpened(3))).toEqual([{ type: "prompt", prompt: "Risky", enhance_prompt: true }]);
    const actions = session.message(3, promptAck("Risky", false, "Prompt rejected by moderation"));
    expect(rejected(actions)).toHaveLength(1);
    expect(kinds(actions)).toContain("StartPeer");
    expect(sent(actions)).toEqual([{ type: "prompt", prompt: "Anime", enhance_prompt: true }]);
    expect(session.desired.prompt).toBe("Anime");
  });
});

describe("stop", () => {
  it("closes everything; what is pending is kept for the next start", () => {
    const session = generating();
    const { requestId } = session.setPrompt(0, "pending");
    const actions = session.stop(1);
    expect(kinds(actions)).toEqual(["CloseSocket", "ClosePeer", "Resolve", "StateChanged"]);
    expect(resolved(actions)).toEqual([[requestId, true]]);
    expect(emitted(actions, "error")).toEqual([]);
    expect(session.desired.prompt).toBe("pending");
    expect(session.stop(2)).toEqual([]);
    // late events from the closed socket change nothing
    expect(session.socketClosed(2, 1000, "")).toEqual([]);
    expect(session.message(2, promptAck("pending"))).toEqual([]);
  });

  it("cancels a pending reconnect", () => {
    const session = generating();
    session.socketClosed(0, 1006);
    session.stop(0.5);
    expect(session.nextDeadline()).toBeNull();
    expect(session.onTimer(5)).toEqual([]);
  });

  it("can start again and replays the desired state", () => {
    const session = generating({ prompt: "Anime" });
    session.stop(1);
    session.setPrompt(2, "Pencil sketch");
    session.start(3);
    expect(sent(session.socketOpened(3))).toEqual([{ type: "prompt", prompt: "Pencil sketch", enhance_prompt: true }]);
  });
});
