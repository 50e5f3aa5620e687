import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Controller } from "../src/controller";
import { lazyMedia } from "../src/lazy_media";
import { livekitMedia } from "../src/livekit_link";
import type { WidgetTraits } from "../src/traits";
import { FakeModel, FakeRoom, FakeStream, FakeTrack, flush, world } from "./fakes";

/** A widget whose `transport` traitlet selects LiveKit, over fake rooms. */
function setup(traits: Partial<WidgetTraits> = {}, joinError: Error | null = null) {
  const fakes = world();
  const rooms: FakeRoom[] = [];
  fakes.deps.media = {
    ...fakes.deps.media,
    livekit: livekitMedia((events) => {
      const room = new FakeRoom(events);
      room.joinError = joinError;
      rooms.push(room);
      return room;
    }),
  };
  const model = new FakeModel({ transport: "livekit", ...traits });
  const controller = new Controller(model.asModel(), fakes.deps);
  return { ...fakes, rooms, model, controller };
}

async function connect(w: ReturnType<typeof setup>) {
  await w.controller.start();
  const request = w.model.fromFront.filter((m) => (m as { type: string }).type === "token_request").at(-1) as { id: number };
  w.model.fromKernel({ type: "token", id: request.id, api_key: "ek_test" });
  await flush();
  const transport = w.transports.at(-1)!;
  transport.accept();
  return transport;
}

/** what the kernel gives the page for its automatic emulator (widget.py EMULATOR_MEDIA_HELP) */
const HELP = "The video cannot reach the local emulator running next to the kernel: set DECART_API_KEY.";
const ROOM_INFO = { type: "livekit_room_info", livekit_url: "ws://room:1", token: "room-jwt", room_name: "r", session_id: "s-1" };

beforeEach(() => vi.stubGlobal("MediaStream", FakeStream));
afterEach(() => vi.unstubAllGlobals());

describe("Controller on LiveKit", () => {
  it("joins the handshake's room, shows the inference video, goes live, and leaves the room on stop", async () => {
    const w = setup({ prompt: "Anime" });
    const transport = await connect(w);
    expect(transport.sent.map((m) => (m as { type: string }).type)).toEqual(["livekit_join", "prompt"]);
    transport.deliver({ type: "prompt_ack", prompt: "Anime", success: true });
    transport.deliver(ROOM_INFO);
    await flush();
    const room = w.rooms[0]!;
    expect(room.joined).toEqual(["ws://room:1", "room-jwt"]);
    expect(room.published).toEqual([w.sources[0]!.track]);
    expect(w.model.get("connection_state")).toBe("connected");
    expect(w.peers).toHaveLength(0); // no WebRTC peer
    room.events.videoTrack("inference-server-0", new FakeTrack() as unknown as MediaStreamTrack);
    expect(w.controller.remoteStream).not.toBeNull();
    transport.deliver({ type: "generation_started" });
    transport.deliver({ type: "generation_tick", seconds: 2 });
    expect(w.model.get("connection_state")).toBe("generating");
    expect(w.model.get("generation_seconds")).toBe(2);
    expect(w.model.get("session_id")).toBe("s-1");
    w.controller.stop();
    expect(room.closed).toBe(true);
    expect(w.controller.remoteStream).toBeNull();
  });

  it("joins an emulator's wildcard room at the page's host; a room that fails from a remote page names the cause", async () => {
    // the kernel relay hands the browser ws://0.0.0.0:<port> for the automatic emulator's room
    const unreachable = new Error("could not establish signal connection");
    const w = setup({ prompt: "Anime", remote_page_help: HELP, realtime_url: "" }, unreachable);
    w.deps.pageHost = () => "10.1.0.2";
    const transport = await connect(w);
    transport.deliver({ type: "prompt_ack", prompt: "Anime", success: true });
    transport.deliver({ ...ROOM_INFO, livekit_url: "ws://0.0.0.0:8123" });
    await flush();
    expect(w.rooms[0]!.joined).toEqual(["ws://10.1.0.2:8123", "room-jwt"]);
    expect(w.model.get("connection_state")).toBe("disconnected"); // ended at once: no retry
    const error = w.model.get("last_error");
    expect(error).toContain("room");
    expect(error).toContain(HELP);
    expect(error).not.toMatch(/connection lost/i);
  });

  it("a room of a service that is not beside the kernel fails without that explanation", async () => {
    const w = setup({ prompt: "Anime", realtime_url: "wss://api3.decart.ai" }, new Error("could not establish signal connection"));
    w.deps.pageHost = () => "10.1.0.2";
    const transport = await connect(w);
    transport.deliver({ type: "prompt_ack", prompt: "Anime", success: true });
    transport.deliver(ROOM_INFO);
    await flush();
    expect(w.rooms[0]!.joined).toEqual(["ws://room:1", "room-jwt"]);
    expect(w.model.get("connection_state")).toBe("disconnected"); // ended at once: no retry
    expect(w.model.get("last_error")).not.toContain("local emulator");
  });

  it("joins every room with the widget's current ice_servers (none: the LiveKit server's own)", async () => {
    const turn = { urls: ["turn:turn.example.org:3478"], username: "u", credential: "p" };
    const w = setup({ prompt: "Anime", ice_servers: [turn] });
    const transport = await connect(w);
    transport.deliver(ROOM_INFO);
    await flush();
    expect(w.rooms[0]!.iceServers).toEqual([turn]);
    // the kernel refreshes the list (an ice_servers function) before the next connect
    w.model.set("ice_servers", []);
    w.rooms[0]!.events.connection("lost");
    w.clock.advance(1);
    const request = w.model.fromFront.filter((m) => (m as { type: string }).type === "token_request").at(-1) as { id: number };
    w.model.fromKernel({ type: "token", id: request.id, api_key: "ek_2" });
    await flush();
    const again = w.transports.at(-1)!;
    again.accept();
    again.deliver({ ...ROOM_INFO, token: "room-jwt-2" });
    await flush();
    expect(w.rooms[1]!.iceServers).toEqual([]);
  });

  it("shows the place in the queue until the room info comes, then clears it", async () => {
    const w = setup({ prompt: "Anime" });
    const transport = await connect(w);
    transport.deliver({ type: "queue_position", position: 3, queue_size: 7 });
    expect([w.model.get("queue_position"), w.model.get("queue_size")]).toEqual([3, 7]);
    transport.deliver({ type: "queue_position", position: 1, queue_size: 6 });
    expect([w.model.get("queue_position"), w.model.get("queue_size")]).toEqual([1, 6]);
    const reported = Object.assign({}, ...w.model.reports.map((r) => r.state));
    expect(reported).toMatchObject({ queue_position: 1, queue_size: 6 }); // the kernel hears it too
    transport.deliver(ROOM_INFO);
    expect([w.model.get("queue_position"), w.model.get("queue_size")]).toEqual([null, null]);
  });

  it("a lost room reconnects the session in a new room, replaying the latest prompt", async () => {
    const w = setup({ prompt: "Anime" });
    const transport = await connect(w);
    transport.deliver({ type: "prompt_ack", prompt: "Anime", success: true });
    transport.deliver(ROOM_INFO);
    await flush();
    w.model.set("prompt", "Noir");
    transport.deliver({ type: "prompt_ack", prompt: "Noir", success: true });
    w.rooms[0]!.events.connection("lost");
    expect(w.rooms[0]!.closed).toBe(true);
    expect(w.model.get("connection_state")).toBe("reconnecting");
    w.clock.advance(1); // the first backoff
    const request = w.model.fromFront.filter((m) => (m as { type: string }).type === "token_request").at(-1) as { id: number };
    w.model.fromKernel({ type: "token", id: request.id, api_key: "ek_2" });
    await flush();
    const again = w.transports.at(-1)!;
    expect(again).not.toBe(transport);
    again.accept();
    expect(again.sent).toEqual([{ type: "livekit_join" }, { type: "prompt", prompt: "Noir", enhance_prompt: true }]);
    again.deliver({ type: "prompt_ack", prompt: "Noir", success: true });
    again.deliver({ ...ROOM_INFO, token: "room-jwt-2" });
    await flush();
    expect(w.rooms).toHaveLength(2);
    expect(w.rooms[1]!.joined).toEqual(["ws://room:1", "room-jwt-2"]);
  });
});

describe("Controller: the LiveKit asset", () => {
  it("is asked of the kernel when a LiveKit session starts, right after its token, never for WebRTC", async () => {
    const gen_a = world();
    gen_a.deps.media = { ...gen_a.deps.media, livekit: lazyMedia("livekit") };
    const webrtcModel = new FakeModel({ prompt: "Anime" });
    const webrtc = new Controller(webrtcModel.asModel(), gen_a.deps);
    await webrtc.start();
    expect(webrtcModel.fromFront.some((m) => (m as { type: string }).type === "asset_request")).toBe(false);

    const gen_b = world();
    gen_b.deps.media = { ...gen_b.deps.media, livekit: lazyMedia("livekit") };
    const model = new FakeModel({ prompt: "Anime", transport: "livekit" });
    const controller = new Controller(model.asModel(), gen_b.deps);
    expect(model.fromFront).toEqual([]); // not at construction either
    await controller.start();
    // before the token's answer and the socket: the asset loads while they come
    const types = model.fromFront.map((m) => (m as { type: string }).type);
    expect(types.filter((t) => t === "token_request" || t === "asset_request")).toEqual(["token_request", "asset_request"]);
    expect(model.fromFront).toContainEqual({ type: "asset_request", name: "livekit" });
    expect(gen_b.transports).toHaveLength(0);
    const request = model.fromFront.find((m) => (m as { type: string }).type === "token_request") as { id: number };
    model.fromKernel({ type: "token", id: request.id, api_key: "ek_test" });
    await flush();
    expect(model.fromFront.filter((m) => (m as { type: string }).type === "asset_request")).toHaveLength(1);
    // the kernel cannot give it: the session ends with the kernel's message
    model.fromKernel({ type: "asset_error", name: "livekit", kind: "error", message: "livekit.js is missing" });
    await flush();
    gen_b.transports.at(-1)!.accept();
    expect(model.get("last_error")).toBe("livekit.js is missing");
  });

  it("is asked for after the source's own asset: the kernel answers in order and the socket waits for the source", () => {
    const w = world();
    w.deps.media = { ...w.deps.media, livekit: lazyMedia("livekit") };
    // a screen, video-file or Python source: its code is the "sources" asset (sources.ts)
    w.deps.openSource = (_kind, _options, loadAsset) => new Promise(() => void loadAsset?.("sources"));
    const model = new FakeModel({ prompt: "Anime", transport: "livekit", source: "screen" });
    void new Controller(model.asModel(), w.deps).start();
    const requests = model.fromFront.filter((m) => (m as { type: string }).type.endsWith("_request"));
    expect(requests).toEqual([
      expect.objectContaining({ type: "token_request" }),
      { type: "asset_request", name: "sources" },
      { type: "asset_request", name: "livekit" },
    ]);
  });

  it("a transport this front end lacks is refused at start with a clear message", async () => {
    const w = world();
    const model = new FakeModel({ transport: "carrier-pigeon" });
    const controller = new Controller(model.asModel(), w.deps);
    await controller.start();
    expect(model.get("last_error")).toBe('transport="carrier-pigeon" is not supported by this front end.');
    expect(w.sources).toHaveLength(0);
  });
});
