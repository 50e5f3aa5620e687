// The media handshakes on their own, through the HandshakeHost a session core gives them (the
// twin of tests/unit/test_handshakes.py). What they do inside a session is in conformance/traces
// (handshake-*, ice-*, genb-*); here is their contract with the core, and a check that the core
// never branches on a media transport's name.
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { Action } from "../src/actions";
import { MEDIA_TRANSPORTS, type MediaTransportName } from "../src/constants";
import { InvalidInput } from "../src/errors";
import { type HandshakeHost, type MediaHandshake, handshakeFor } from "../src/handshake";
import type { LivekitRoomInfoMessage } from "../src/messages";
import { Session } from "../src/session";

const INITIAL: Action = { kind: "Send", message: { type: "prompt", prompt: "Anime", enhance_prompt: true } };
const ROOM: LivekitRoomInfoMessage = {
  type: "livekit_room_info",
  livekit_url: "ws://127.0.0.1:8000",
  token: "token-s1",
  room_name: "room-s1",
  session_id: "s1",
};

/** Records what a handshake asks of its core; `empty`: the desired state is empty. */
function fakeHost(empty = false): HandshakeHost & { calls: [string, unknown][] } {
  const calls: [string, unknown][] = [];
  return {
    calls,
    sendInitialState: (now) => (calls.push(["sendInitialState", now]), INITIAL),
    skipInitialState: (now) => (calls.push(["skipInitialState", now]), empty ? [{ kind: "Resolve", requestId: 7, superseded: false }] : null),
    awaitMedia: (now) => void calls.push(["awaitMedia", now]),
    newSessionId: (sessionId) => (calls.push(["newSessionId", sessionId]), [{ kind: "Emit", name: "session_id", value: sessionId }]),
    postpone: (seconds) => void calls.push(["postpone", seconds]),
  };
}

const make = (transport: MediaTransportName, host: HandshakeHost): MediaHandshake => handshakeFor(transport, host, 15);

describe("media handshakes", () => {
  it.each(MEDIA_TRANSPORTS)("%s has its handshake", (transport) => {
    const handshake = make(transport, fakeHost());
    expect(handshake.name).toBe(transport);
    expect(handshake.started).toBe(false);
    expect(handshake.queue).toBeNull();
    expect(new Session({ transport }).transport).toBe(transport);
  });

  it("an unknown media transport is InvalidInput naming the known ones", () => {
    const unknown = () => make("carrier-pigeon" as MediaTransportName, fakeHost());
    expect(unknown).toThrow(InvalidInput);
    expect(unknown).toThrow(/"webrtc" or "livekit", got carrier-pigeon/);
  });

  it("Gen-A starts its peer once the initial state is answered", () => {
    const host = fakeHost();
    const handshake = make("webrtc", host);
    expect(handshake.begin(1)).toEqual([INITIAL]);
    expect(handshake.localOffer("offer")).toEqual([]); // no peer yet: nothing of it goes out
    expect(handshake.acked(2)).toEqual([{ kind: "StartPeer" }]);
    expect(host.calls).toEqual([
      ["sendInitialState", 1],
      ["awaitMedia", 2],
    ]);
    expect(handshake.started).toBe(true);
    expect(handshake.localOffer("offer")).toEqual([{ kind: "Send", message: { type: "offer", sdp: "offer" } }]);
    expect(handshake.localCandidate(null)).toEqual([{ kind: "Send", message: { type: "ice-candidate", candidate: null } }]);
    const sessionId = { type: "session_id", session_id: "s1", server_ip: null, server_port: null } as const;
    expect(handshake.message(3, sessionId)).toEqual([{ kind: "Emit", name: "session_id", value: "s1" }]);
    expect(host.calls.at(-1)).toEqual(["newSessionId", "s1"]);
    expect(handshake.message(3, { type: "queue_position", position: 1, queue_size: 2 })).toBeNull(); // the core's to ignore
    expect(handshake.nextDeadline()).toBeNull();
    expect(handshake.expired(1e9)).toBeNull();
  });

  it("Gen-A forgets held candidates when closed", () => {
    const handshake = make("webrtc", fakeHost());
    handshake.acked(0);
    expect(handshake.message(0.1, { type: "ice-candidate", candidate: { candidate: "candidate:stale" } })).toEqual([]);
    expect(handshake.close(0.2)).toEqual([{ kind: "ClosePeer" }]);
    expect(handshake.close(0.3)).toEqual([]); // closed once
    handshake.acked(1);
    expect(handshake.message(1.1, { type: "answer", sdp: "v=0" })).toEqual([{ kind: "ApplyAnswer", sdp: "v=0" }]);
    expect(handshake.message(1.2, { type: "ice-candidate", candidate: { candidate: "c" } })).toEqual([
      { kind: "AddRemoteCandidate", candidate: { candidate: "c" } },
    ]);
  });

  it.each([
    ["webrtc", "peer connection", ["failed", "closed"]],
    ["livekit", "room", ["failed", "closed", "disconnected"]],
  ] as const)("%s: which media states mean the link is gone", (transport, media, lost) => {
    const handshake = make(transport, fakeHost());
    for (const state of ["new", "connecting", "connected", "disconnected", "failed", "closed"] as const) {
      expect(handshake.lost(state)).toBe((lost as readonly string[]).includes(state) ? `${media} ${state}` : null);
    }
  });

  it("Gen-B joins, then sends its initial state as its own frame", () => {
    const host = fakeHost();
    const handshake = make("livekit", host);
    expect(handshake.begin(1)).toEqual([{ kind: "Send", message: { type: "livekit_join" } }, INITIAL]);
    expect(host.calls).toEqual([
      ["skipInitialState", 1],
      ["sendInitialState", 1],
    ]);
    expect(handshake.nextDeadline()).toBe(16);
    expect(handshake.acked(2)).toEqual([]); // the room waits for its info, not for the ack
    expect(handshake.started).toBe(false);
    expect(handshake.localOffer("offer")).toEqual([]);
    expect(handshake.localCandidate(null)).toEqual([]);
  });

  it("Gen-B with nothing to send joins as passthrough", () => {
    const host = fakeHost(true);
    const handshake = make("livekit", host);
    expect(handshake.begin(0)).toEqual([
      { kind: "Send", message: { type: "livekit_join", passthrough: true } },
      { kind: "Resolve", requestId: 7, superseded: false },
    ]);
    expect(host.calls.map(([name]) => name)).toEqual(["skipInitialState"]);
  });

  it("Gen-B hands the time in the server's queue to the host", () => {
    const host = fakeHost();
    const handshake = make("livekit", host);
    handshake.begin(0);
    expect(handshake.message(2, { type: "queue_position", position: 3, queue_size: 5 })).toEqual([
      { kind: "Emit", name: "queue", value: { position: 3, size: 5 } },
    ]);
    handshake.message(4, { type: "queue_position", position: 1, queue_size: 5 });
    expect(handshake.queue).toEqual({ position: 1, size: 5 });
    expect(handshake.message(12, ROOM)).toEqual([
      { kind: "Emit", name: "queue", value: null },
      { kind: "JoinRoom", url: "ws://127.0.0.1:8000", token: "token-s1", roomName: "room-s1", sessionId: "s1" },
      { kind: "Emit", name: "session_id", value: "s1" },
    ]);
    // queued from 2 s to 12 s: the core's deadlines move by 10 s; the room's 20 s start now
    expect(host.calls.slice(-3)).toEqual([
      ["postpone", 10],
      ["awaitMedia", 12],
      ["newSessionId", "s1"],
    ]);
    expect(handshake.started).toBe(true);
    expect(handshake.queue).toBeNull();
    expect(handshake.nextDeadline()).toBeNull(); // the room info came
    expect(handshake.message(13, ROOM)).toEqual([]); // a second one changes nothing
  });

  it("Gen-B closed while queued leaves the queue and its deadline", () => {
    const host = fakeHost();
    const handshake = make("livekit", host);
    handshake.begin(0);
    handshake.message(5, { type: "queue_position", position: 1, queue_size: null });
    expect(handshake.close(25)).toEqual([{ kind: "Emit", name: "queue", value: null }]); // no room: no ClosePeer
    expect(host.calls.at(-1)).toEqual(["postpone", 20]);
    expect(handshake.queue).toBeNull();
    expect(handshake.nextDeadline()).toBeNull();
    handshake.begin(30);
    expect(handshake.expired(44.9)).toBeNull();
    expect(handshake.expired(45)).toBe("no room info within 15 s");
  });
});

describe("the session core's structure", () => {
  const SRC = new URL("../src/", import.meta.url);
  const CORE = ["session.ts", "attempts.ts", "update_queue.ts", "requests.ts", "actions.ts", "handshake.ts"];
  const NAME = String.raw`["'](?:webrtc|livekit)["']`;
  const COMPARISON = new RegExp(String.raw`(?:[!=]==?\s*${NAME})|(?:${NAME}\s*[!=]==?)|(?:case\s+${NAME})`);

  it("no module of the core compares a media transport's name", () => {
    expect(readdirSync(SRC)).toEqual(expect.arrayContaining(CORE));
    const offending = CORE.flatMap((file) =>
      readFileSync(new URL(file, SRC), "utf8")
        .split("\n")
        .flatMap((line, index) => (COMPARISON.test(line) ? [`${file}:${index + 1}: ${line.trim()}`] : [])),
    );
    expect(offending).toEqual([]);
    expect(COMPARISON.test(`if (this.transportName === "livekit") return this.join(now);`)).toBe(true);
    expect(COMPARISON.test(`case 'webrtc':`)).toBe(true);
  });
});
