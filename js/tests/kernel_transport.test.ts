// Signaling "kernel": the comm transport alone, and the controller driving it with a fake model.
import { describe, expect, it } from "vitest";
import { toBase64 } from "../src/bytes";
import { Controller } from "../src/controller";
import { KernelTransport, kernelSignalingMode } from "../src/kernel_transport";
import type { WidgetTraits } from "../src/traits";
import { defaultSignalingModes, type KernelChannel } from "../src/transports";
import { FakeModel, flush, world } from "./fakes";

/** A comm channel whose kernel side the test plays. */
class FakeChannel implements KernelChannel {
  readonly sent: { content: Record<string, unknown>; buffers: ArrayBuffer[] }[] = [];
  private handlers = new Set<(content: unknown, buffers: unknown[]) => void>();
  send(content: Record<string, unknown>, buffers: ArrayBuffer[] = []): void {
    this.sent.push({ content, buffers });
  }
  listen(handler: (content: unknown, buffers: unknown[]) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }
  fromKernel(content: unknown): void {
    for (const handler of [...this.handlers]) handler(content, []);
  }
  get listeners(): number {
    return this.handlers.size;
  }
}

function openTransport(id = 7) {
  const channel = new FakeChannel();
  const transport = new KernelTransport(id, "lucy-2.1", channel);
  const events: unknown[] = [];
  transport.onopen = () => events.push("open");
  transport.onmessage = (frame) => events.push(["message", JSON.parse(frame)]);
  transport.onclose = (code, reason) => events.push(["close", code, reason]);
  transport.open();
  return { channel, transport, events };
}

describe("KernelTransport", () => {
  it("opens through the kernel and passes frames both ways", () => {
    const { channel, transport, events } = openTransport();
    expect(channel.sent).toEqual([{ content: { type: "signal_open", id: 7, model: "lucy-2.1" }, buffers: [] }]);
    transport.send('{"type":"prompt","prompt":"early"}'); // not open yet: dropped, as a WebSocket does
    channel.fromKernel({ type: "signal_opened", id: 7 });
    transport.send('{"type":"prompt","prompt":"Anime","enhance_prompt":true}');
    channel.fromKernel({ type: "signal", id: 7, frame: { type: "prompt_ack", prompt: "Anime", success: true } });
    channel.fromKernel({ type: "signal", id: 7, frame: '{"type":"generation_started"}' });
    channel.fromKernel({ type: "signal_closed", id: 7, code: 1013, reason: "Concurrent session limit reached." });
    expect(channel.sent.slice(1)).toEqual([
      { content: { type: "signal", id: 7, frame: { type: "prompt", prompt: "Anime", enhance_prompt: true } }, buffers: [] },
    ]);
    expect(events).toEqual([
      "open",
      ["message", { type: "prompt_ack", prompt: "Anime", success: true }],
      ["message", { type: "generation_started" }],
      ["close", 1013, "Concurrent session limit reached."],
    ]);
    expect(channel.listeners).toBe(0);
  });

  it("sends a set_image's image as a binary buffer, not base64 in JSON", () => {
    const { channel, transport } = openTransport();
    channel.fromKernel({ type: "signal_opened", id: 7 });
    const image = new Uint8Array(30_000).map((_, i) => i % 251);
    transport.send(JSON.stringify({ type: "set_image", image_data: toBase64(image), prompt: "Anime", enhance_prompt: true }));
    transport.send(JSON.stringify({ type: "set_image", image_data: null, prompt: null }));
    const [withImage, cleared] = channel.sent.slice(1);
    expect(withImage!.content).toEqual({ type: "signal", id: 7, frame: { type: "set_image", prompt: "Anime", enhance_prompt: true } });
    expect(JSON.stringify(withImage!.content).length).toBeLessThan(200);
    expect(withImage!.buffers).toHaveLength(1);
    expect(new Uint8Array(withImage!.buffers[0]!)).toEqual(image);
    expect(cleared).toEqual({ content: { type: "signal", id: 7, frame: { type: "set_image", image_data: null, prompt: null } }, buffers: [] });
  });

  it("ignores other connections' messages and fires nothing after a local close", () => {
    const { channel, transport, events } = openTransport(7);
    channel.fromKernel({ type: "signal_opened", id: 6 }); // a previous connection's
    channel.fromKernel({ type: "start" });
    expect(events).toEqual([]);
    channel.fromKernel({ type: "signal_opened", id: 7 });
    transport.close(1000, "bye");
    channel.fromKernel({ type: "signal", id: 7, frame: { type: "generation_started" } });
    channel.fromKernel({ type: "signal_closed", id: 7, code: 1000, reason: "" });
    expect(events).toEqual(["open"]);
    expect(channel.sent.at(-1)!.content).toEqual({ type: "signal_close", id: 7, code: 1000, reason: "bye" });
    transport.close(); // twice is fine
    expect(channel.sent.filter((s) => s.content["type"] === "signal_close")).toHaveLength(1);
  });

  it("reports a connection the kernel could not open as code null", () => {
    const { channel, events } = openTransport();
    channel.fromKernel({ type: "signal_closed", id: 7, code: null, reason: "HTTP 401: Invalid API key" });
    expect(events).toEqual([["close", null, "HTTP 401: Invalid API key"]]);
  });

  it("is a mode with no credential, a fresh id per connection, and needs the comm", () => {
    const mode = kernelSignalingMode();
    expect(mode.needsCredential).toBe(false);
    expect(mode.kernelSendsUpdates).toBe(true);
    const channel = new FakeChannel();
    const a = mode.connect({ model: "m", realtimeUrl: "", credential: null, kernel: channel }) as KernelTransport;
    const b = mode.connect({ model: "m", realtimeUrl: "", credential: null, kernel: channel }) as KernelTransport;
    expect(a.id).not.toBe(b.id);
    expect(() => mode.connect({ model: "m", realtimeUrl: "", credential: null })).toThrow(/comm/);
    expect(defaultSignalingModes()["kernel"]!.needsCredential).toBe(false);
  });
});

// ---- the controller in kernel mode, with the real KernelTransport over a fake model ----------------

function kernelSetup(traits: Partial<WidgetTraits> = {}) {
  const fakes = world();
  fakes.deps.signalingModes = { ...fakes.deps.signalingModes, kernel: kernelSignalingMode() };
  const model = new FakeModel({ signaling: "kernel", ...traits });
  const controller = new Controller(model.asModel(), fakes.deps);
  return { ...fakes, model, controller };
}

type Sent = { type: string; id?: number; frame?: Record<string, unknown> };
const signals = (model: FakeModel) =>
  model.fromFront.filter((m): m is Sent => ["signal_open", "signal", "signal_close"].includes((m as Sent).type));

async function kernelLive(w: ReturnType<typeof kernelSetup>) {
  await w.controller.start();
  await flush();
  const open = signals(w.model).at(-1)!;
  expect(open.type).toBe("signal_open");
  const id = open.id!;
  w.model.fromKernel({ type: "signal_opened", id });
  const handshake = signals(w.model).at(-1)!.frame!;
  const ack =
    handshake["type"] === "prompt"
      ? { type: "prompt_ack", prompt: handshake["prompt"], success: true, error: null }
      : { type: "set_image_ack", success: true, error: null };
  w.model.fromKernel({ type: "signal", id, frame: ack });
  const peer = w.peers.at(-1)!;
  peer.events.offer("v=0 offer");
  peer.events.state("connected");
  w.model.fromKernel({ type: "signal", id, frame: { type: "generation_started" } });
  return { id, handshake, peer };
}

describe("Controller with signaling kernel", () => {
  it("connects over the comm with no token request and reaches generating", async () => {
    const w = kernelSetup({ prompt: "Anime" });
    const { id, handshake } = await kernelLive(w);
    expect(w.model.fromFront.some((m) => (m as Sent).type === "token_request")).toBe(false);
    expect(handshake).toEqual({ type: "prompt", prompt: "Anime", enhance_prompt: true });
    expect(signals(w.model).at(-1)).toEqual({ type: "signal", id, frame: { type: "offer", sdp: "v=0 offer" } });
    expect(w.model.get("connection_state")).toBe("generating");
  });

  it("leaves prompt and image updates to the kernel while a session is open", async () => {
    const w = kernelSetup({ prompt: "Anime" });
    const { id } = await kernelLive(w);
    const before = signals(w.model).length;
    for (let i = 0; i < 50; i++) w.model.pythonSets("prompt", `p${i}`);
    w.model.pythonSets("image", new DataView(new Uint8Array([0x89, 0x50, 0x4e, 0x47]).buffer));
    expect(signals(w.model).length).toBe(before); // nothing rides the (maybe blocked) comm
    // the kernel's acks are foreign to the core: it learns the accepted prompt, no error
    w.model.fromKernel({ type: "signal", id, frame: { type: "prompt_ack", prompt: "p49", success: true, error: null } });
    expect(w.controller.session.accepted.prompt).toBe("p49");
    w.model.fromKernel({ type: "signal", id, frame: { type: "prompt_ack", prompt: "bad", success: false, error: "no" } });
    expect(w.model.get("last_error")).toBe("");
    expect(w.model.get("connection_state")).toBe("generating");
  });

  it("starts the next session from the traitlets and sends an image handshake as a buffer", async () => {
    const w = kernelSetup({ prompt: "Anime" });
    await kernelLive(w);
    w.model.pythonSets("prompt", "Noir");
    const image = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    w.model.pythonSets("image", new DataView(image.buffer));
    w.controller.stop();
    expect(signals(w.model).at(-1)!.type).toBe("signal_close");
    expect(w.model.get("connection_state")).toBe("disconnected");
    await w.controller.start();
    await flush();
    const id = signals(w.model).at(-1)!.id!;
    w.model.fromKernel({ type: "signal_opened", id });
    const index = w.model.fromFront.length - 1;
    expect(w.model.fromFront[index]).toEqual({
      type: "signal",
      id,
      frame: { type: "set_image", prompt: "Noir", enhance_prompt: true },
    });
    const [buffer] = w.model.fromFrontBuffers[index] as ArrayBuffer[];
    expect(new Uint8Array(buffer!)).toEqual(image);
  });

  it("refuses an image over 10 MB before anything is sent", async () => {
    const w = kernelSetup({ prompt: "Anime" });
    await kernelLive(w);
    const before = w.model.fromFront.length;
    w.model.pythonSets("image", new DataView(new ArrayBuffer(10 * 1024 * 1024 + 1)));
    expect(w.model.get("last_error")).toMatch(/limit is 10 MB/);
    expect(w.model.get("image")).toBeNull();
    expect(w.model.fromFront.length).toBe(before);
  });

  it("reconnects with a new connection after the kernel reports a loss", async () => {
    const w = kernelSetup({ prompt: "Anime" });
    const { id } = await kernelLive(w);
    w.model.fromKernel({ type: "signal_closed", id, code: 1006, reason: "" });
    expect(w.model.get("connection_state")).toBe("reconnecting");
    w.clock.advance(1);
    await flush();
    const reopen = signals(w.model).at(-1)!;
    expect(reopen.type).toBe("signal_open");
    expect(reopen.id).not.toBe(id);
  });
});
