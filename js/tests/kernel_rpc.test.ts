import { describe, expect, it } from "vitest";
import { AuthenticationError, ConnectionLost, type DecartError } from "../src/errors";
import { KernelComm } from "../src/kernel_comm";
import { TOKEN_TIMEOUT_MS, TokenRequests } from "../src/kernel_rpc";
import type { Credential } from "../src/transports";
import { clockOf, FakeClock, FakeModel, flush } from "./fakes";

function setup() {
  const model = new FakeModel();
  const clock = new FakeClock();
  const comm = new KernelComm(model.asModel());
  const tokens = new TokenRequests(comm, clockOf(clock));
  return { model, clock, comm, tokens };
}

function outcome(promise: Promise<Credential>) {
  const seen: { value?: Credential; error?: DecartError } = {};
  promise.then(
    (value) => (seen.value = value),
    (error: DecartError) => (seen.error = error),
  );
  return seen;
}

describe("TokenRequests", () => {
  it("asks with a fresh id and resolves with the kernel's answer to that id", async () => {
    const w = setup();
    const first = outcome(w.tokens.request());
    const second = outcome(w.tokens.request());
    expect(w.model.fromFront).toEqual([
      { type: "token_request", id: 1 },
      { type: "token_request", id: 2 },
    ]);
    w.model.fromKernel({ type: "token", id: 2, api_key: "ek_two", realtime_url: "ws://emulator:1" });
    w.model.fromKernel({ type: "token", id: 2, api_key: "ek_again" }); // a duplicate is ignored
    w.model.fromKernel({ type: "token", id: 1, api_key: "ek_one" });
    await flush();
    expect(first.value).toEqual({ apiKey: "ek_one" });
    expect(second.value).toEqual({ apiKey: "ek_two", realtimeUrl: "ws://emulator:1" });
    expect(w.clock.pending()).toBe(0);
  });

  it("rejects with the typed error the kernel names", async () => {
    const w = setup();
    const seen = outcome(w.tokens.request());
    w.model.fromKernel({ type: "token_error", id: 1, kind: "authentication", message: "Invalid API key" });
    await flush();
    expect(seen.error).toBeInstanceOf(AuthenticationError);
    expect(seen.error!.message).toBe("Invalid API key");
    expect(seen.error!.permanent).toBe(true);
  });

  it("a kernel that does not answer is a lost connection (retried by the core)", async () => {
    const w = setup();
    const seen = outcome(w.tokens.request());
    w.clock.advance(TOKEN_TIMEOUT_MS / 1000 - 0.001);
    await flush();
    expect(seen.error).toBeUndefined();
    w.clock.advance(0.001);
    await flush();
    expect(seen.error).toBeInstanceOf(ConnectionLost);
    expect(seen.error!.message).toContain("token request");
    w.model.fromKernel({ type: "token", id: 1, api_key: "late" });
    await flush();
    expect(seen.value).toBeUndefined();
  });

  it("dispose clears the timers and stops listening", () => {
    const w = setup();
    void w.tokens.request();
    w.tokens.dispose();
    expect(w.clock.pending()).toBe(0);
    expect(w.model.listenerCount()).toBe(0);
  });
});

describe("KernelComm", () => {
  it("sends nothing once the kernel is gone or the widget disposed; the channel only stops on dispose", () => {
    const w = setup();
    const channel = w.comm.channel();
    w.comm.gone = "The kernel restarted";
    expect(w.comm.reachable).toBe(false);
    w.comm.send({ type: "token_request", id: 9 });
    channel.send({ type: "signal_close", id: 1, code: 1000, reason: "" });
    expect(w.model.fromFront).toEqual([{ type: "signal_close", id: 1, code: 1000, reason: "" }]);
    w.comm.dispose();
    channel.send({ type: "signal_close", id: 2, code: 1000, reason: "" });
    expect(w.model.fromFront).toHaveLength(1);
  });

  it("passes the kernel's objects to listeners, and binary buffers to the channel's", () => {
    const w = setup();
    const messages: unknown[] = [];
    const frames: [unknown, unknown[]][] = [];
    const stop = w.comm.listen((message) => messages.push(message));
    w.comm.channel().listen((content, buffers) => frames.push([content, buffers]));
    w.model.fromKernel({ type: "start" });
    w.model.fromKernel("not an object");
    expect(messages).toEqual([{ type: "start" }]);
    expect(frames).toEqual([
      [{ type: "start" }, []],
      ["not an object", []],
    ]);
    stop();
    w.model.fromKernel({ type: "stop" });
    expect(messages).toHaveLength(1);
    w.comm.dispose();
    expect(w.model.listenerCount()).toBe(0);
  });
});
