// The TypeScript session core's own glue: what the shared conformance traces cannot say.
// Its behaviour (handshakes, acks, timeouts, retries, errors, replay, seconds) is in
// conformance/traces, replayed by conformance.test.ts here and by the Python tests on the twin.

import { describe, expect, it } from "vitest";
import { InvalidInput } from "../src/errors";
import { BACKOFF, CONNECT_TIMEOUT, IMAGE_ACK_TIMEOUT, INITIAL_ACK_TIMEOUT, PROMPT_ACK_TIMEOUT, Session } from "../src/session";

describe("Session glue", () => {
  it("throws InvalidInput for an oversize or malformed initial image", () => {
    expect(() => new Session({ image: "A".repeat(14_000_000) })).toThrow(InvalidInput);
    expect(() => new Session({ image: "data:image/png,raw" })).toThrow(/base64/);
  });

  it("reports the accepted and desired state with the enhance flag", () => {
    const session = new Session({ prompt: "Noir", image: "aGVsbG8=", enhance: false });
    expect(session.desired).toEqual({ prompt: "Noir", image: "aGVsbG8=", enhance: false });
    expect(session.accepted).toEqual({ prompt: null, image: null, enhance: false });
  });

  it("counts the reconnect attempts used since the session last generated", () => {
    const session = new Session({ prompt: "A" });
    session.start(0);
    session.socketOpened(0);
    session.message(0, { type: "prompt_ack", prompt: "A", success: true, error: null });
    session.message(0, { type: "generation_started" });
    session.socketClosed(1, 1006);
    session.onTimer(2);
    session.socketClosed(2, null);
    expect(session.retriesUsed).toBe(2);
    session.onTimer(4);
    session.socketOpened(4);
    session.message(4, { type: "prompt_ack", prompt: "A", success: true, error: null });
    session.message(5, { type: "generation_tick", seconds: 1 });
    expect(session.retriesUsed).toBe(0);
  });

  it("hands out unique, increasing request ids", () => {
    const session = new Session();
    const ids = [session.setPrompt(0, "a"), session.setImage(0, null), session.setPrompt(0, "   ")].map((r) => r.requestId);
    expect(ids).toEqual([1, 2, 3]);
  });

  it("takes webrtc unless livekit is asked for, and refuses any other transport", () => {
    expect(new Session().transport).toBe("webrtc");
    const session = new Session({ transport: "livekit" });
    expect(session.transport).toBe("livekit");
    expect(session.queue).toBeNull();
    expect(() => new Session({ transport: "sfu" as never })).toThrowError(InvalidInput);
    expect(() => new Session({ transport: "sfu" as never })).toThrowError('"webrtc" or "livekit", got sfu');
  });

  it("exports the protocol's defaults", () => {
    expect([PROMPT_ACK_TIMEOUT, IMAGE_ACK_TIMEOUT, INITIAL_ACK_TIMEOUT, CONNECT_TIMEOUT]).toEqual([15, 30, 30, 300]);
    expect(BACKOFF).toEqual([1, 2, 4, 8, 10]);
  });
});
