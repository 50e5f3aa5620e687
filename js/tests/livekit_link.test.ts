import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Input } from "../src/core_loop";
import { type JoinRoom, LiveKitLink } from "../src/livekit_link";
import type { MediaHost } from "../src/media";
import type { Session } from "../src/session";
import { STATS_INTERVAL_MS, type Stats } from "../src/stats";
import { clockOf, FakeClock, FakeRoom, FakeStream, FakeTrack, flush } from "./fakes";

const track = (): MediaStreamTrack => new FakeTrack() as unknown as MediaStreamTrack;

const JOIN: JoinRoom = { kind: "JoinRoom", url: "ws://room", token: "room-jwt", roomName: "r1", sessionId: "s1" };

/** A link over fake rooms; `configure` prepares each room as it is made. */
function setup(configure: (room: FakeRoom) => void = () => {}) {
  const clock = new FakeClock();
  const rooms: FakeRoom[] = [];
  const peerStates: string[] = [];
  const streams: (MediaStream | null)[] = [];
  const stats: (Stats | null)[] = [];
  let current: MediaStreamTrack | null = track();
  const core = { peerState: (_now: number, state: string) => (peerStates.push(state), []) } as unknown as Session;
  const host: MediaHost = {
    clock: clockOf(clock),
    toCore: (input: Input) => void input(core, clock.now),
    track: () => current,
    iceServers: () => [{ urls: "stun:a" }],
    remoteStream: (stream) => streams.push(stream),
    stats: (sample) => stats.push(sample),
    loadAsset: async () => ({}),
    fail: () => {},
  };
  const link = new LiveKitLink(host, (events) => {
    const room = new FakeRoom(events);
    configure(room);
    rooms.push(room);
    return room;
  });
  return { clock, rooms, peerStates, streams, stats, link, track: () => current, setTrack: (t: MediaStreamTrack | null) => (current = t) };
}

beforeEach(() => vi.stubGlobal("MediaStream", FakeStream));
afterEach(() => vi.unstubAllGlobals());

describe("LiveKitLink", () => {
  it("joins the room with the handshake's URL and room token, publishes the source, then reports connected", async () => {
    const w = setup();
    w.link.handle(JOIN);
    await flush();
    expect(w.rooms).toHaveLength(1);
    const room = w.rooms[0]!;
    expect(room.joined).toEqual(["ws://room", "room-jwt"]);
    expect(room.iceServers).toEqual([{ urls: "stun:a" }]); // the host's, as the peer link's
    expect(room.published).toEqual([w.track()]);
    expect(w.peerStates).toEqual(["connected"]);
  });

  it("shows the video of the inference-server participant only", async () => {
    const w = setup();
    w.link.handle(JOIN);
    await flush();
    const events = w.rooms[0]!.events;
    events.videoTrack("viewer-1", track());
    expect(w.link.remoteStream).toBeNull();
    const output = track();
    events.videoTrack("inference-server-abc", output);
    expect(w.link.remoteStream?.getVideoTracks()).toEqual([output]);
    expect(w.streams).toHaveLength(1);
    events.videoTrackGone("viewer-1", track());
    expect(w.link.remoteStream).not.toBeNull();
    events.videoTrackGone("inference-server-abc", output);
    expect(w.link.remoteStream).toBeNull();
    expect(w.streams.at(-1)).toBeNull();
  });

  it("maps the room's connection to peer states: a resume is recoverable, a loss is not", async () => {
    const w = setup();
    w.link.handle(JOIN);
    await flush();
    const events = w.rooms[0]!.events;
    events.connection("reconnecting");
    events.connection("reconnected");
    events.connection("lost");
    expect(w.peerStates).toEqual(["connected", "disconnected", "connected", "failed"]);
  });

  it.each([
    ["join", (room: FakeRoom) => (room.joinError = new Error("401 token rejected"))],
    ["publish", (room: FakeRoom) => (room.publishError = new Error("no codec"))],
  ])("a room whose %s fails reports failed", async (_step, breakRoom) => {
    const w = setup(breakRoom);
    w.link.handle(JOIN);
    await flush();
    expect(w.peerStates).toEqual(["failed"]);
  });

  it("ClosePeer leaves the room, clears the output and the stats, and silences the room's late events", async () => {
    const w = setup();
    w.link.handle(JOIN);
    await flush();
    const room = w.rooms[0]!;
    room.events.videoTrack("inference-server-1", track());
    w.link.handle({ kind: "ClosePeer" });
    expect(room.closed).toBe(true);
    expect(w.link.remoteStream).toBeNull();
    expect(w.streams.at(-1)).toBeNull();
    expect(w.stats.at(-1)).toBeNull();
    room.events.connection("lost");
    room.events.videoTrack("inference-server-1", track());
    expect(w.peerStates).toEqual(["connected"]);
    expect(w.link.remoteStream).toBeNull();
  });

  it("a room closed while it joins is left, and never reported connected", async () => {
    const w = setup((room) => (room.hold = true));
    w.link.handle(JOIN);
    w.link.handle(JOIN); // a reconnect's room replaces the one still joining
    const [first, second] = w.rooms;
    expect(first!.closed).toBe(true);
    w.link.handle({ kind: "ClosePeer" });
    first!.open();
    second!.open();
    await flush();
    expect(second!.closed).toBe(true);
    expect(first!.published).toEqual([]);
    expect(second!.published).toEqual([]);
    expect(w.peerStates).toEqual([]);
  });

  it("a new source is published in place of the old one while the room lives", async () => {
    const w = setup();
    w.link.handle(JOIN);
    await flush();
    const next = track();
    await w.link.replaceTrack(next);
    await w.link.replaceTrack(null); // the source is being reopened: nothing to send meanwhile
    expect(w.rooms[0]!.published).toEqual([w.track(), next]);
    w.link.handle({ kind: "ClosePeer" });
    await w.link.replaceTrack(track());
    expect(w.rooms[0]!.published).toHaveLength(2);
  });

  it("samples the room's track stats every STATS_INTERVAL_MS into the stats shape, until it closes", async () => {
    const w = setup();
    w.link.handle(JOIN);
    await flush();
    const room = w.rooms[0]!;
    const report = (entries: Record<string, unknown>[]) =>
      new Map(entries.map((entry, i) => [String(i), entry])) as unknown as RTCStatsReport;
    room.reports = [
      report([{ type: "outbound-rtp", kind: "video", framesPerSecond: 30 }]),
      report([
        { type: "inbound-rtp", kind: "video", framesPerSecond: 29, bytesReceived: 1000 },
        { type: "candidate-pair", state: "succeeded", nominated: true, currentRoundTripTime: 0.012 },
      ]),
    ];
    w.clock.advance(STATS_INTERVAL_MS / 1000);
    await flush();
    expect(w.stats.at(-1)).toEqual({ fps_in: 30, fps_out: 29, rtt_ms: 12, bitrate_kbps: 0 });
    room.reports = [report([{ type: "inbound-rtp", kind: "video", framesPerSecond: 29, bytesReceived: 126_000 }])];
    w.clock.advance(STATS_INTERVAL_MS / 1000);
    await flush();
    expect(w.stats.at(-1)).toMatchObject({ fps_out: 29, bitrate_kbps: 1000 });
    w.link.handle({ kind: "ClosePeer" });
    const count = w.stats.length;
    w.clock.advance(5);
    await flush();
    expect(w.stats.length).toBe(count);
    expect(w.clock.pending()).toBe(0);
  });

  it("ignores the WebRTC actions", async () => {
    const w = setup();
    w.link.handle({ kind: "StartPeer" });
    w.link.handle({ kind: "ApplyAnswer", sdp: "v=0" });
    await flush();
    expect(w.rooms).toHaveLength(0);
    expect(w.peerStates).toEqual([]);
  });
});
