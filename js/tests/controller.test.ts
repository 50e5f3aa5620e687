import { describe, expect, it } from "vitest";
import { Controller } from "../src/controller";
import { TOKEN_TIMEOUT_MS } from "../src/kernel_rpc";
import { MediaError } from "../src/errors";
import type { MediaHost, MediaTransport } from "../src/media";
import type { WidgetTraits } from "../src/traits";
import { FakeModel, flush, world } from "./fakes";


function setup(traits: Partial<WidgetTraits> = {}, options: Parameters<typeof world>[0] = {}) {
  const fakes = world(options);
  const model = new FakeModel(traits);
  const controller = new Controller(model.asModel(), fakes.deps);
  return { ...fakes, model, controller };
}

const tokenRequests = (model: FakeModel) =>
  model.fromFront.filter((m): m is { type: "token_request"; id: number } => (m as { type: string }).type === "token_request");

/** Answer the latest token_request the way the kernel does. */
function grantToken(model: FakeModel, apiKey = "ek_test") {
  const request = tokenRequests(model).at(-1)!;
  model.fromKernel({ type: "token", id: request.id, api_key: apiKey, expires_at: "2030-01-01T00:00:00Z" });
}

/** Run a full connect: source, token, socket, handshake, peer, generating. */
async function live(w: ReturnType<typeof setup>) {
  await w.controller.start();
  grantToken(w.model);
  await flush();
  const transport = w.transports.at(-1)!;
  transport.accept();
  const first = transport.sent.at(-1) as { type: string; prompt: string };
  transport.deliver(first.type === "prompt" ? { type: "prompt_ack", prompt: first.prompt, success: true } : { type: "set_image_ack", success: true });
  const peer = w.peers.at(-1)!;
  peer.events.offer("v=0 offer");
  peer.events.state("connected");
  transport.deliver({ type: "generation_started" });
  return { transport, peer };
}

describe("Controller: connecting", () => {
  it("does nothing on construction but publish the state", () => {
    const w = setup({ connection_state: "generating" as never });
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.sources).toHaveLength(0);
    expect(w.model.fromFront).toEqual([]);
  });

  it("opens the source, asks the kernel for a token, connects and runs the handshake", async () => {
    const w = setup({ prompt: "Anime style", ice_servers: [{ urls: "stun:x" }] });
    await w.controller.start();
    expect(w.peers).toHaveLength(0);
    expect(w.sources).toHaveLength(1);
    expect(w.sources[0]!.kind).toBe("camera");
    expect(w.sources[0]!.options).toMatchObject({ width: 1088, height: 624, fps: 30, deviceId: "", mirror: false });
    expect(w.model.get("connection_state")).toBe("connecting");
    expect(tokenRequests(w.model)).toEqual([{ type: "token_request", id: 1 }]);
    expect(w.transports).toHaveLength(0);

    grantToken(w.model, "ek_secret");
    await flush();
    const transport = w.transports[0]!;
    expect(transport.context).toMatchObject({
      model: "lucy-2.1",
      realtimeUrl: "ws://127.0.0.1:9/",
      credential: { apiKey: "ek_secret" },
    });
    expect(transport.opened).toBe(true);

    // the peer connection is made while the socket opens; what it says waits for the ack
    const peer = w.peers[0]!;
    expect(peer.started).toBe(true);
    expect(peer.track).toBe(w.sources[0]!.track);
    expect(peer.iceServers).toEqual([{ urls: "stun:x" }]);
    peer.events.offer("v=0 offer");
    peer.events.candidate({ candidate: "candidate:1", sdpMid: "0", sdpMLineIndex: 0 });
    transport.accept();
    expect(transport.sent).toEqual([{ type: "prompt", prompt: "Anime style", enhance_prompt: true }]);
    transport.deliver({ type: "prompt_ack", prompt: "Anime style", success: true, error: null });
    expect(w.peers).toHaveLength(1);
    peer.events.candidate(null);
    expect(transport.sent.slice(1)).toEqual([
      { type: "offer", sdp: "v=0 offer" },
      { type: "ice-candidate", candidate: { candidate: "candidate:1", sdpMid: "0", sdpMLineIndex: 0 } },
      { type: "ice-candidate", candidate: null },
    ]);
    transport.deliver({ type: "answer", sdp: "v=0 answer" });
    transport.deliver({ type: "ice-candidate", candidate: { candidate: "candidate:2" } });
    transport.deliver({ type: "ice-restart", turn_config: { server_url: "turn:t" } });
    expect(peer.answers).toEqual(["v=0 answer"]);
    expect(peer.remoteCandidates).toEqual([{ candidate: "candidate:2" }]);
    expect(peer.restarts).toEqual([{ server_url: "turn:t" }]);

    peer.events.state("connected");
    expect(w.model.get("connection_state")).toBe("connected");
    transport.deliver({ type: "session_id", session_id: "sess-1" });
    transport.deliver({ type: "generation_tick", seconds: 3 });
    expect(w.model.get("connection_state")).toBe("generating");
    expect(w.model.get("generation_seconds")).toBe(3);
    expect(w.model.get("session_id")).toBe("sess-1");
    expect(w.model.saves).toBeGreaterThan(0);
  });

  it("uses the realtime_url the kernel sends with the token", async () => {
    const w = setup();
    await w.controller.start();
    w.model.fromKernel({ type: "token", id: 1, api_key: "ek", realtime_url: "ws://emulator:1" });
    await flush();
    expect(w.transports[0]!.context.credential).toEqual({ apiKey: "ek", realtimeUrl: "ws://emulator:1" });
  });

  it("asks for a new token on every reconnect and keeps the usage total", async () => {
    const w = setup();
    const { transport } = await live(w);
    transport.deliver({ type: "generation_tick", seconds: 10 });
    transport.drop(1006);
    expect(w.model.get("connection_state")).toBe("reconnecting");
    expect(w.peers[0]!.closed).toBe(true);
    expect(w.sources[0]!.stopped).toBe(false); // the camera stays on through a reconnect
    w.clock.advance(1);
    expect(tokenRequests(w.model).map((r) => r.id)).toEqual([1, 2]);
    grantToken(w.model, "ek_second");
    await flush();
    const second = w.transports[1]!;
    expect(second.context.credential?.apiKey).toBe("ek_second");
    second.accept();
    second.deliver({ type: "prompt_ack", prompt: "Anime", success: true });
    second.deliver({ type: "generation_tick", seconds: 2 });
    expect(w.model.get("generation_seconds")).toBe(12);
  });

  it("ignores events from a transport it already left", async () => {
    const w = setup();
    const { transport } = await live(w);
    transport.drop(1006);
    transport.deliver({ type: "generation_ended", seconds: 1, reason: "insufficient_credits" });
    expect(w.model.get("connection_state")).toBe("reconnecting");
    expect(w.model.get("last_error")).toBe("");
  });

  it("ignores malformed frames", async () => {
    const w = setup();
    const { transport } = await live(w);
    transport.deliver("{not json");
    transport.deliver({ type: "generation_tick", seconds: "x" });
    expect(w.model.get("connection_state")).toBe("generating");
  });

  it("publishes stats about once a second from getStats", async () => {
    const w = setup();
    const { peer } = await live(w);
    w.clock.advance(1);
    await flush();
    w.clock.advance(1);
    await flush();
    expect(peer.statsCalls).toBe(2);
    expect(w.model.get("stats")).toEqual({ fps_in: 30, fps_out: 29, rtt_ms: 42, bitrate_kbps: 1000 });
    w.controller.stop();
    expect(w.model.get("stats")).toEqual({});
  });
});

describe("Controller: prompt and image", () => {
  it("sends prompt changes from Python or the view", async () => {
    const w = setup();
    const { transport } = await live(w);
    w.model.pythonSets("prompt", "Cyberpunk neon city");
    expect(transport.sent.at(-1)).toEqual({ type: "prompt", prompt: "Cyberpunk neon city", enhance_prompt: true });
    transport.deliver({ type: "prompt_ack", prompt: "Cyberpunk neon city", success: true });
    expect(w.model.fromFront.at(-1)).toEqual({
      type: "ack",
      request: "prompt",
      success: true,
      error: null,
      prompt: "Cyberpunk neon city",
    });
    w.model.pythonSets("enhance", false);
    expect(transport.sent.at(-1)).toEqual({ type: "prompt", prompt: "Cyberpunk neon city", enhance_prompt: false });
  });

  it("reverts a prompt rejected by moderation and says why", async () => {
    const w = setup();
    const { transport } = await live(w);
    w.model.pythonSets("prompt", "something forbidden");
    transport.deliver({ type: "prompt_ack", prompt: "something forbidden", success: false, error: "Prompt rejected by moderation" });
    expect(w.model.get("prompt")).toBe("Anime");
    expect(w.model.get("last_error")).toBe("Prompt rejected by moderation");
    expect(w.model.get("last_error_kind")).toBe("moderation");
    expect(w.model.fromFront.at(-1)).toMatchObject({ type: "ack", request: "prompt", success: false });
    expect(w.model.get("connection_state")).toBe("generating");
    // the revert itself is not sent again
    expect(transport.sent.filter((m) => (m as { type: string }).type === "prompt")).toHaveLength(2);
  });

  it("sends an image as raw base64 and reverts it when moderated", async () => {
    const w = setup();
    const { transport } = await live(w);
    w.model.pythonSets("image", new DataView(new Uint8Array([104, 105]).buffer));
    expect(transport.sent.at(-1)).toEqual({ type: "set_image", image_data: "aGk=", prompt: "Anime", enhance_prompt: true });
    transport.deliver({ type: "set_image_ack", success: false, error: "Image rejected by moderation" });
    expect(w.model.get("image")).toBeNull();
    expect(w.model.get("last_error_kind")).toBe("moderation");
  });

  it("refuses an image over 10 MB before sending it", async () => {
    const w = setup();
    const { transport } = await live(w);
    const count = transport.sent.length;
    w.model.pythonSets("image", new Uint8Array(10 * 1024 * 1024 + 1));
    expect(transport.sent).toHaveLength(count);
    expect(w.model.get("last_error_kind")).toBe("invalid_input");
    expect(w.model.get("image")).toBeNull();
  });

  it("replays the latest prompt and image after a reconnect", async () => {
    const w = setup();
    const { transport } = await live(w);
    transport.drop(1011);
    w.model.pythonSets("prompt", "Noir");
    w.model.pythonSets("image", new Uint8Array([1, 2, 3]));
    w.clock.advance(1);
    grantToken(w.model);
    await flush();
    const second = w.transports.at(-1)!;
    second.accept();
    expect(second.sent).toEqual([{ type: "set_image", image_data: "AQID", prompt: "Noir", enhance_prompt: true }]);
  });

  it("an AckTimeout shows in the banner", async () => {
    const w = setup();
    await live(w);
    w.model.pythonSets("prompt", "slow");
    w.clock.advance(15);
    expect(w.model.get("last_error_kind")).toBe("ack_timeout");
  });
});

describe("Controller: failures", () => {
  it("close 1013 is a concurrency limit at once, with no retry", async () => {
    const w = setup();
    const { transport } = await live(w);
    transport.drop(1013, "Concurrent session limit reached.");
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.model.get("last_error_kind")).toBe("concurrency");
    expect(w.sources[0]!.stopped).toBe(true);
    w.clock.advance(60);
    expect(tokenRequests(w.model)).toHaveLength(1);
  });

  it("a token_error for authentication is not retried", async () => {
    const w = setup();
    await w.controller.start();
    w.model.fromKernel({ type: "token_error", id: 1, kind: "authentication", message: "Invalid API key" });
    await flush();
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.model.get("last_error")).toBe("Invalid API key");
    expect(w.model.get("last_error_kind")).toBe("authentication");
    expect(w.sources[0]!.stopped).toBe(true);
    w.clock.advance(60);
    expect(tokenRequests(w.model)).toHaveLength(1);
  });

  it("a kernel that never answers the token request is retried, then reported", async () => {
    const w = setup();
    await w.controller.start();
    w.clock.advance(TOKEN_TIMEOUT_MS / 1000);
    await flush();
    // retried, and still "connecting": a connection never made is not a lost one
    expect(w.model.get("connection_state")).toBe("connecting");
    // each retry after its backoff; its token request times out (and settles) before the socket's
    // own open timeout would
    for (const delay of [1, 2, 4, 8, 10]) {
      w.clock.advance(delay);
      await flush();
      w.clock.advance(TOKEN_TIMEOUT_MS / 1000);
      await flush();
    }
    expect(tokenRequests(w.model)).toHaveLength(6);
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.model.get("last_error_kind")).toBe("connection");
    expect(w.model.get("last_error")).toContain("token request");
  });

  it("credits running out ends the session with a typed error", async () => {
    const w = setup();
    const { transport, peer } = await live(w);
    transport.deliver({ type: "generation_ended", seconds: 5, reason: "insufficient_credits" });
    expect(w.model.get("last_error_kind")).toBe("credits");
    expect(peer.closed).toBe(true);
    expect(transport.closed).not.toBeNull();
  });

  it("a transport that cannot even open ends the session with a clear error", async () => {
    const w = setup();
    w.deps.signalingModes["direct"] = {
      needsCredential: true,
      connect: () => {
        throw new SyntaxError("The URL '/v1/stream?api_key=ek_secret' is invalid.");
      },
    };
    await w.controller.start();
    grantToken(w.model);
    await flush();
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.model.get("last_error_kind")).toBe("invalid_input");
    expect(w.model.get("last_error")).toBe("Cannot open the realtime connection: The URL '/v1/stream?api_key=***' is invalid.");
    expect(w.sources[0]!.stopped).toBe(true);
  });

  it("a camera failure is shown and nothing connects", async () => {
    const error = new MediaError("permission", "Camera permission denied");
    const w = setup({}, { sourceError: error });
    await w.controller.start();
    expect(w.model.get("last_error_kind")).toBe("permission");
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.controller.starting).toBe(false);
    grantToken(w.model); // the token asked for while the camera opened goes unused
    await flush();
    expect(w.transports).toHaveLength(0);
  });

  it("a camera that stops mid-session ends it with a message", async () => {
    const w = setup();
    await live(w);
    w.sources[0]!.fakeTrack.end();
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.model.get("last_error_kind")).toBe("camera");
  });

  it("an unknown signaling mode is reported before the camera opens", async () => {
    const w = setup({ signaling: "kernel" });
    await w.controller.start();
    expect(w.sources).toHaveLength(0);
    expect(w.model.get("last_error_kind")).toBe("invalid_input");
    expect(w.model.get("last_error")).toContain('signaling="kernel"');
  });

  it("starting again clears the previous error", async () => {
    const w = setup();
    const { transport } = await live(w);
    transport.drop(1013);
    await w.controller.start();
    expect(w.model.get("last_error")).toBe("");
  });
});

describe("Controller: lifecycle", () => {
  it("start/stop custom messages from w.start() / w.stop()", async () => {
    const w = setup();
    w.model.fromKernel({ type: "start" });
    await flush();
    expect(w.sources).toHaveLength(1);
    expect(tokenRequests(w.model)).toHaveLength(1);
    w.model.fromKernel({ type: "stop" });
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.sources[0]!.stopped).toBe(true);
    grantToken(w.model);
    await flush();
    expect(w.transports).toHaveLength(0); // the late token is dropped
  });

  it("stop closes the peer, the socket and the camera", async () => {
    const w = setup();
    const { transport, peer } = await live(w);
    w.controller.stop();
    expect(peer.closed).toBe(true);
    expect(transport.closed).toEqual([1000, ""]);
    expect(w.sources[0]!.stopped).toBe(true);
    expect(w.controller.localStream).toBeNull();
    expect(w.model.get("last_error")).toBe("");
    expect(w.clock.pending()).toBe(0);
  });

  it("a stop while the camera opens releases it", async () => {
    const w = setup();
    const starting = w.controller.start();
    w.controller.stop();
    await starting;
    expect(w.sources[0]!.stopped).toBe(true);
    grantToken(w.model);
    await flush();
    expect(w.transports).toHaveLength(0);
  });

  it("never opens a second camera or peer", async () => {
    const w = setup();
    await Promise.all([w.controller.start(), w.controller.start()]);
    expect(w.sources).toHaveLength(1);
    const { peer } = await live(w); // start() again is a no-op while connecting
    expect(w.sources).toHaveLength(1);
    expect(w.peers).toHaveLength(1);
    peer.events.state("failed");
    w.clock.advance(1);
    grantToken(w.model);
    await flush();
    w.transports.at(-1)!.accept();
    w.transports.at(-1)!.deliver({ type: "prompt_ack", prompt: "Anime", success: true });
    expect(w.peers).toHaveLength(2);
    expect(w.peers.filter((p) => !p.closed)).toHaveLength(1);
  });

  it("closes the peer it made while connecting when the start fails or stops", async () => {
    const w = setup();
    await w.controller.start();
    w.model.fromKernel({ type: "token_error", id: 1, kind: "authentication", message: "invalid key" });
    await flush();
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.peers).toHaveLength(0); // made only once the socket connects

    await w.controller.start();
    grantToken(w.model);
    await flush();
    expect(w.peers).toHaveLength(1);
    w.transports.at(-1)!.accept();
    w.transports.at(-1)!.deliver({ type: "error", error: "Invalid API key" });
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.peers[0]!.closed).toBe(true);

    await w.controller.start();
    grantToken(w.model);
    await flush();
    w.transports.at(-1)!.accept();
    expect(w.peers).toHaveLength(2);
    w.controller.stop();
    expect(w.peers.every((p) => p.closed)).toBe(true);
    expect(w.transports.at(-1)!.sent.map((m) => (m as { type: string }).type)).toEqual(["prompt"]);
  });

  it("keeps an unused early peer through a reconnect before the ack, and sends its offer once", async () => {
    const w = setup();
    await w.controller.start();
    grantToken(w.model);
    await flush();
    const peer = w.peers[0]!;
    peer.events.offer("v=0 early");
    w.transports[0]!.drop(1006);
    expect(peer.closed).toBe(false);
    w.clock.advance(1);
    grantToken(w.model);
    await flush();
    expect(w.peers).toHaveLength(1);
    const second = w.transports[1]!;
    second.accept();
    second.deliver({ type: "prompt_ack", prompt: "Anime", success: true });
    expect(second.sent.slice(1)).toEqual([{ type: "offer", sdp: "v=0 early" }]);
    expect(w.transports[0]!.sent.some((m) => (m as { type: string }).type === "offer")).toBe(false);
  });

  it("gives an early peer the new track when the source changed before the ack", async () => {
    const w = setup();
    await w.controller.start();
    grantToken(w.model);
    await flush();
    const early = w.peers[0]!;
    w.model.set("mirror", true);
    await flush();
    expect(early.closed).toBe(true); // made with the old track
    const transport = w.transports[0]!;
    transport.accept();
    transport.deliver({ type: "prompt_ack", prompt: "Anime", success: true });
    const peer = w.peers.at(-1)!;
    expect(peer).not.toBe(early);
    expect(peer.track).toBe(w.sources.at(-1)!.track);
    expect(w.peers.filter((p) => !p.closed)).toHaveLength(1);
  });

  it("keeps the preview through a reconnect and a camera change while running", async () => {
    const w = setup();
    expect(w.controller.previewStream).toBeNull();
    const { peer, transport } = await live(w);
    expect(w.controller.previewStream).toBeNull(); // no output yet
    peer.events.remoteStream({} as MediaStream);
    expect(w.controller.previewStream).toBe(w.sources[0]!.stream);
    transport.drop(1006);
    expect(w.model.get("connection_state")).toBe("reconnecting");
    expect(w.controller.previewStream).toBe(w.sources[0]!.stream);
    w.model.set("mirror", true);
    await flush();
    expect(w.sources).toHaveLength(2);
    expect(w.controller.previewStream).toBe(w.sources[1]!.stream);
  });

  it("swaps the track when the camera settings change while running", async () => {
    const w = setup();
    const { peer } = await live(w);
    w.model.pythonSets("device_id", "cam-2");
    await flush();
    expect(w.sources).toHaveLength(2);
    expect(w.sources[0]!.stopped).toBe(true);
    expect(w.sources[1]!.options.deviceId).toBe("cam-2");
    expect(peer.replacedWith).toEqual([w.sources[1]!.track]);
  });

  it("dispose releases everything and detaches from the model", async () => {
    const w = setup();
    const { transport, peer } = await live(w);
    const listenersBefore = w.model.listenerCount();
    expect(listenersBefore).toBeGreaterThan(0);
    w.controller.dispose();
    expect(peer.closed).toBe(true);
    expect(transport.closed).not.toBeNull();
    expect(w.sources[0]!.stopped).toBe(true);
    expect(w.model.listenerCount()).toBe(0);
    expect(w.clock.pending()).toBe(0);
    w.controller.dispose();
  });

  it("a lost kernel ends the session, shows why, and refuses to start again", async () => {
    const w = setup();
    const { transport, peer } = await live(w);
    const saves = w.model.saves;
    w.controller.kernelLost("The kernel restarted: run the cell again.");
    expect(peer.closed).toBe(true);
    expect(transport.closed).not.toBeNull();
    expect(w.sources[0]!.stopped).toBe(true);
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.model.get("last_error")).toBe("The kernel restarted: run the cell again.");
    expect(w.model.get("last_error_kind")).toBe("kernel");
    // the new kernel does not know this comm: nothing is sent to it
    expect(w.model.saves).toBe(saves);
    const sent = w.model.fromFront.length;
    w.controller.dismissError();
    await w.controller.start();
    await flush();
    expect(w.sources).toHaveLength(1);
    expect(w.model.fromFront.length).toBe(sent);
    expect(w.model.get("last_error_kind")).toBe("kernel");
  });

  it("a closed notebook whose kernel runs on still reports the session's end to it", async () => {
    const w = setup();
    await live(w);
    const saves = w.model.saves;
    w.controller.kernelLost("The notebook was closed.", true);
    expect(w.model.saves).toBeGreaterThan(saves);
    const reported = Object.assign({}, ...w.model.reports.map((r) => r.state));
    expect(reported.connection_state).toBe("disconnected");
    expect(reported.last_error_kind).toBe("kernel");
  });

  it("notifies every subscribed view, and autostarts once", async () => {
    const w = setup({ autostart: true });
    let a = 0;
    let b = 0;
    w.controller.subscribe(() => a++);
    const unsubscribe = w.controller.subscribe(() => b++);
    w.controller.autostart();
    w.controller.autostart();
    await flush();
    expect(w.sources).toHaveLength(1);
    expect(a).toBeGreaterThan(0);
    expect(b).toBe(a);
    unsubscribe();
    w.controller.stop();
    expect(b).toBeLessThan(a);
    w.controller.autostart();
    await flush();
    expect(w.sources).toHaveLength(1);
  });
});


describe("Controller: views come and go", () => {
  it("stops the session and releases the camera when the last view is gone for the grace period", async () => {
    const w = setup({ prompt: "Anime" });
    const detachFirst = w.controller.attachView();
    const detachSecond = w.controller.attachView();
    const { transport, peer } = await live(w);
    expect(w.model.get("connection_state")).toBe("generating");

    detachFirst();
    w.clock.advance(10);
    expect(w.model.get("connection_state")).toBe("generating"); // one view still shows it

    detachSecond();
    detachSecond(); // idempotent
    w.clock.advance(1);
    expect(w.sources[0]!.stopped).toBe(false); // within the grace period
    w.clock.advance(2);
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.sources[0]!.stopped).toBe(true);
    expect(transport.closed).not.toBeNull();
    expect(peer.closed).toBe(true);
  });

  it("keeps the session when a view comes back within the grace period (re-render)", async () => {
    const w = setup({ prompt: "Anime" });
    const detach = w.controller.attachView();
    await live(w);
    detach();
    w.clock.advance(1);
    w.controller.attachView();
    w.clock.advance(10);
    expect(w.model.get("connection_state")).toBe("generating");
    expect(w.sources[0]!.stopped).toBe(false);
  });
});

describe("Controller: the first token is asked for while the camera opens", () => {
  it("uses the prefetched token for the first connect, a fresh one for the next", async () => {
    const w = setup({ prompt: "Anime" });
    const starting = w.controller.start();
    expect(tokenRequests(w.model)).toHaveLength(1); // before the camera is open
    await starting;
    grantToken(w.model, "ek_first");
    await flush();
    expect(w.transports).toHaveLength(1);
    expect(tokenRequests(w.model)).toHaveLength(1); // the connect took the prefetched one
  });

  it("does not use a prefetched token once it is stale", async () => {
    const w = setup({ prompt: "Anime" });
    w.clock.advance(0);
    const starting = w.controller.start();
    grantToken(w.model, "ek_old");
    w.clock.advance(60); // the user took a minute to allow the camera
    await starting;
    await flush();
    expect(tokenRequests(w.model)).toHaveLength(2);
  });
});

describe("Controller: reporting state to the kernel", () => {
  it("reports every saved change by custom message too (never held back like save_changes)", async () => {
    const w = setup({ prompt: "Anime" });
    await live(w);
    const reported = Object.assign({}, ...w.model.reports.map((r) => r.state));
    expect(reported.connection_state).toBe("generating");
    expect(reported).not.toHaveProperty("prompt"); // only what the front end changed
    expect(w.model.reports.every((r) => Object.keys(r.state).length > 0)).toBe(true);
  });
});

describe("Controller: the media transport is an axis of its own", () => {
  it("hands the core's media actions to whatever media transport it is given, over any signaling mode", async () => {
    const w = setup({ prompt: "Anime" });
    const handled: string[] = [];
    let host: MediaHost | null = null;
    const media: MediaTransport = {
      open(given) {
        host = given;
        return {
          remoteStream: null,
          preload: () => handled.push("preload"),
          prepare: () => handled.push("prepare"),
          handle: (action) => handled.push(action.kind),
          replaceTrack: async () => {},
          discardPrepared: () => handled.push("discardPrepared"),
          dispose: () => handled.push("dispose"),
        };
      },
    };
    const controller = new Controller(w.model.asModel(), { ...w.deps, media: { webrtc: media } });
    await controller.start();
    expect(handled).toEqual(["preload"]); // at the start, before the credential and the socket
    grantToken(w.model);
    await flush();
    const transport = w.transports.at(-1)!;
    transport.accept();
    transport.deliver({ type: "prompt_ack", prompt: "Anime", success: true });
    expect(handled).toEqual(["preload", "prepare", "StartPeer"]);
    // what the link reports goes to the core and the traitlets
    host!.toCore((s, now) => s.peerState(now, "connected"));
    expect(w.model.get("connection_state")).toBe("connected");
    host!.stats({ fps_in: 1, fps_out: 2, rtt_ms: 3, bitrate_kbps: 4 });
    expect(w.model.get("stats")).toEqual({ fps_in: 1, fps_out: 2, rtt_ms: 3, bitrate_kbps: 4 });
    expect(host!.track()).toBe(w.sources[0]!.track);
    expect(w.peers).toHaveLength(0); // no WebRTC peer was made
    controller.dispose();
    expect(handled.slice(3, 5)).toEqual(["ClosePeer", "discardPrepared"]);
    expect(handled.at(-1)).toBe("dispose");
  });
});

describe("Controller: frames for the kernel", () => {
  const frameAnswers = (model: FakeModel) =>
    model.fromFront.filter((m) => ["frame", "frame_error"].includes((m as { type: string }).type));

  it("refuses a frame request while no view is in the page, as hidden", async () => {
    const w = setup();
    const detach = w.controller.attachView();
    detach(); // the output was cleared
    w.model.fromKernel({ type: "frame_request", id: 1, which: "output", timeout_ms: 5000 });
    for (let i = 0; i < 25; i++) {
      w.clock.advance(0.1); // the grace for a view on its way
      await flush();
    }
    expect(frameAnswers(w.model)).toEqual([{ type: "frame_error", id: 1, kind: "hidden", message: expect.any(String) }]);
  });

  it("refuses a frame request while stopped, and keeps one sent right after start waiting", async () => {
    const w = setup();
    w.controller.attachView();
    w.model.fromKernel({ type: "frame_request", id: 1, which: "output", timeout_ms: 5000 });
    await flush();
    expect(frameAnswers(w.model)).toEqual([{ type: "frame_error", id: 1, kind: "not_started", message: expect.any(String) }]);
    // w.start(); await w.snapshot(): the request comes while the source opens, then the core starts
    w.model.fromKernel({ type: "start" });
    w.model.fromKernel({ type: "frame_request", id: 2, which: "output", timeout_ms: 5000 });
    await flush();
    await flush();
    expect(w.model.get("connection_state")).toBe("connecting");
    expect(frameAnswers(w.model)).toHaveLength(1); // still waiting for the output stream
    w.controller.stop();
    await flush();
    expect(frameAnswers(w.model).at(-1)).toMatchObject({ type: "frame_error", id: 2, kind: "stopped" });
  });
});
