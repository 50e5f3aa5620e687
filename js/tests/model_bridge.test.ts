import { describe, expect, it } from "vitest";
import type { Input } from "../src/core_loop";
import { AckTimeout, ConnectionLost, ModerationError } from "../src/errors";
import { KernelComm } from "../src/kernel_comm";
import { kernelSignalingMode } from "../src/kernel_transport";
import { ImageCodec, ModelBridge } from "../src/model_bridge";
import { Session } from "../src/session";
import type { WidgetTraits } from "../src/traits";
import type { SignalingMode } from "../src/transports";
import { FakeModel } from "./fakes";

const direct: SignalingMode = { needsCredential: true, connect: () => { throw new Error("not here"); } };

/** A bridge over a fake model and a real core, whose inputs run at once at t=0. */
function setup(traits: Partial<WidgetTraits> = {}) {
  const model = new FakeModel(traits);
  const comm = new KernelComm(model.asModel());
  const bridge = new ModelBridge(model.asModel(), comm, { direct, kernel: kernelSignalingMode() }, {});
  const session = new Session(bridge.initialState());
  const fed: string[] = [];
  bridge.bind({
    session,
    feed: (input: Input) => {
      for (const action of input(session, 0)) fed.push(action.kind === "Send" ? `Send:${action.message.type}` : action.kind);
    },
  });
  return { model, comm, bridge, session, fed };
}

/** A session with its handshake acked: updates go out at once. */
function running(w: ReturnType<typeof setup>) {
  w.session.start(0);
  w.session.socketOpened(0);
  w.session.message(0, { type: "prompt_ack", prompt: w.session.desired.prompt ?? "", success: true, error: null });
  w.fed.length = 0;
}

describe("ModelBridge", () => {
  it("starts the core from the traitlets and publishes the core's state", () => {
    const w = setup({ prompt: "Anime", connection_state: "generating" as never });
    expect(w.bridge.initialState()).toEqual({ prompt: "Anime", image: null, enhance: true });
    expect(w.model.get("connection_state")).toBe("disconnected");
    expect(w.model.saves).toBe(1);
  });

  it("reads what a connection and a source are made of from the traitlets", () => {
    const w = setup({
      model: "",
      model_spec: null,
      device_id: "cam-2",
      camera: { facingMode: "user" },
      mirror: true,
      source: "screen",
      ice_servers: [{ urls: "stun:x" }],
    });
    expect(w.bridge.target()).toEqual({ model: "lucy-2.1", realtimeUrl: "ws://127.0.0.1:9/", resolution: null, remoteHelp: "" });
    expect(setup({ remote_page_help: "Use a key." }).bridge.target().remoteHelp).toBe("Use a key.");
    expect(setup({ resolution: "1080p" }).bridge.target().resolution).toBe("1080p");
    expect(w.bridge.iceServers()).toEqual([{ urls: "stun:x" }]);
    expect(w.bridge.source()).toEqual({
      kind: "screen",
      options: {
        width: 1088,
        height: 624,
        fps: 30,
        deviceId: "cam-2",
        camera: { facingMode: "user" },
        mirror: true,
        video: null,
      },
    });
    expect(w.bridge.signaling()).toBe(direct);
    w.model.set("signaling", "pigeon");
    expect(w.bridge.signaling()).toBeUndefined();
    expect(w.bridge.signalingName()).toBe("pigeon");
  });

  it("turns prompt, enhance and image changes into core requests, once per real change", () => {
    const w = setup({ prompt: "Anime" });
    running(w);
    w.model.pythonSets("prompt", "Noir");
    expect(w.fed).toEqual(["Send:prompt"]);
    w.bridge.applyPrompt(); // nothing new
    w.model.pythonSets("enhance", false);
    w.model.pythonSets("image", new Uint8Array([104, 105]));
    expect(w.session.desired).toEqual({ prompt: "Noir", image: "aGk=", enhance: false });
    w.model.pythonSets("image", new Uint8Array([104, 105])); // the same bytes: no request
    expect(w.session.desired.image).toBe("aGk=");
  });

  it("a blank prompt traitlet clears the prompt, as an empty one does", () => {
    const w = setup({ prompt: "Anime" });
    running(w);
    w.model.pythonSets("prompt", "   ");
    expect(w.fed).toEqual(["Send:set_image"]); // no prompt: the passthrough set_image
    expect(w.session.desired.prompt).toBeNull();
    expect(w.model.get("last_error")).toBeFalsy();
  });

  it("acks settled requests to the kernel, and reverts a moderated one", () => {
    const w = setup({ prompt: "Anime" });
    running(w);
    w.model.pythonSets("prompt", "forbidden");
    w.session.message(0, { type: "prompt_ack", prompt: "forbidden", success: false, error: "Prompt rejected by moderation" });
    w.bridge.settled(1, false, new ModerationError("Prompt rejected by moderation"));
    expect(w.model.get("prompt")).toBe("Anime");
    expect(w.model.get("last_error_kind")).toBe("moderation");
    expect(w.model.fromFront.at(-1)).toEqual({
      type: "ack",
      request: "prompt",
      success: false,
      error: "Prompt rejected by moderation",
      prompt: "forbidden",
    });
  });

  it("a session ending says so once: ConnectionLost rejections show no error of their own", () => {
    const w = setup();
    w.bridge.settled(7, false, new ConnectionLost("gone"));
    expect(w.model.get("last_error")).toBe("");
    w.bridge.settled(8, false, new AckTimeout("slow"));
    expect(w.model.get("last_error_kind")).toBe("ack_timeout");
  });

  it("refuses an image over 10 MB and puts the accepted one back", () => {
    const w = setup();
    running(w);
    w.model.pythonSets("image", new Uint8Array(10 * 1024 * 1024 + 1));
    expect(w.fed).toEqual([]);
    expect(w.model.get("image")).toBeNull();
    expect(w.model.get("last_error")).toMatch(/limit is 10 MB/);
  });

  it("reports the core's generation_seconds (already cumulative across server sessions) until reset", () => {
    // the sum across reconnects is the core's (conformance trace seconds-are-cumulative-across-reconnects)
    const w = setup();
    w.bridge.tick(3);
    w.bridge.tick(12);
    expect(w.model.get("generation_seconds")).toBe(12);
    w.bridge.resetSeconds();
    expect(w.model.get("generation_seconds")).toBe(0);
    w.bridge.tick(1);
    expect(w.model.get("generation_seconds")).toBe(1);
  });

  it("saves stats at once and clears them only when there are some", () => {
    const w = setup();
    const saves = w.model.saves;
    w.bridge.stats(null);
    w.bridge.save();
    expect(w.model.reports).toEqual([]); // no stats: nothing to clear
    w.bridge.stats({ fps_in: 30, fps_out: 29, rtt_ms: 42, bitrate_kbps: 1000 });
    expect(w.model.saves).toBe(saves + 1);
    w.bridge.stats(null);
    expect(w.model.get("stats")).toEqual({});
  });

  it("a view's edit: set and reported, or, where the kernel sends updates, asked of the kernel", () => {
    const w = setup();
    expect(w.bridge.edit("prompt", "Noir")).toBe(false);
    expect(w.model.get("prompt")).toBe("Noir");
    expect(w.model.reports.at(-1)!.state).toEqual({ prompt: "Noir" });

    const k = setup({ signaling: "kernel" });
    expect(k.bridge.edit("prompt", "Noir")).toBe(true);
    expect(k.bridge.edit("device_id", "cam-2")).toBe(false); // not the kernel's
    expect(k.model.get("prompt")).toBe("Anime");
    expect(k.model.get("device_id")).toBe("cam-2");
    expect(k.model.fromFront).toEqual([{ type: "set", state: { prompt: "Noir" }, buffer_keys: [] }]);
  });

  it("writes and saves nothing once the kernel is gone or the bridge disposed", () => {
    const w = setup();
    const saves = w.model.saves;
    w.comm.gone = "The kernel restarted";
    w.bridge.showError(new AckTimeout("slow"));
    w.bridge.save();
    expect(w.model.saves).toBe(saves);
    w.bridge.dispose();
    w.bridge.clearError();
    expect(w.model.get("last_error_kind")).toBe("ack_timeout");
    expect(w.model.listenerCount()).toBe(0);
  });
});

describe("ImageCodec", () => {
  it("encodes the same bytes once and decodes to what it encodes", () => {
    const codec = new ImageCodec();
    const bytes = new Uint8Array([1, 2, 3]);
    expect(codec.encode(bytes)).toBe("AQID");
    expect(codec.encode(new Uint8Array(0))).toBeNull();
    const view = codec.decode("AQID")!;
    expect([...new Uint8Array(view.buffer)]).toEqual([1, 2, 3]);
    expect(codec.encode(new Uint8Array(view.buffer))).toBe("AQID");
    expect(codec.decode(null)).toBeNull();
  });
});
