import { describe, expect, it } from "vitest";
import type { Input } from "../src/core_loop";
import type { MediaHost } from "../src/media";
import { PeerLink, STATS_INTERVAL_MS } from "../src/peer_link";
import { Session } from "../src/session";
import type { Stats } from "../src/stats";
import { clockOf, FakeClock, FakePeer, FakeTrack, flush } from "./fakes";

const track = (): MediaStreamTrack => new FakeTrack() as unknown as MediaStreamTrack;

/** `session`, recording the name of every method called on it. */
function recording(session: Session, calls: string[]): Session {
  return new Proxy(session, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        calls.push(String(name));
        return value.apply(target, args);
      };
    },
  });
}

/** A link over fake peers; the core is a real Session, its inputs recorded by name. */
function setup() {
  const clock = new FakeClock();
  const peers: FakePeer[] = [];
  const inputs: string[] = [];
  const streams: (MediaStream | null)[] = [];
  const stats: (Stats | null)[] = [];
  const session = new Session({ prompt: "Anime" });
  let current: MediaStreamTrack | null = track();
  let iceServers: RTCIceServer[] = [{ urls: "stun:a" }];
  const host: MediaHost = {
    clock: clockOf(clock),
    toCore: (input: Input) => void input(recording(session, inputs), clock.now),
    track: () => current,
    iceServers: () => iceServers,
    remoteStream: (stream) => streams.push(stream),
    stats: (sample) => stats.push(sample),
    loadAsset: async () => ({}),
    fail: () => {},
  };
  const link = new PeerLink((servers, events) => {
    const peer = new FakePeer(servers, events);
    peers.push(peer);
    return peer;
  }, host);
  return {
    clock, peers, inputs, streams, stats, link,
    setTrack: (t: MediaStreamTrack | null) => (current = t),
    setIceServers: (s: RTCIceServer[]) => (iceServers = s),
    track: () => current,
  };
}

describe("PeerLink", () => {
  it("StartPeer takes the warm peer made while connecting and releases its held events in order", () => {
    const w = setup();
    w.link.prepare();
    w.link.prepare(); // one warm peer at most
    expect(w.peers).toHaveLength(1);
    const peer = w.peers[0]!;
    expect(peer.started).toBe(true);
    expect(peer.track).toBe(w.track());
    expect(peer.iceServers).toEqual([{ urls: "stun:a" }]);
    peer.events.offer("v=0 early");
    peer.events.candidate(null);
    expect(w.inputs).toEqual([]); // held until the handshake asks
    w.link.handle({ kind: "StartPeer" });
    expect(w.peers).toHaveLength(1);
    expect(w.inputs).toEqual(["localOffer", "localCandidate"]);
  });

  it("a warm peer made for other ICE servers is closed, and a new one made", () => {
    const w = setup();
    w.link.prepare();
    w.setIceServers([{ urls: "stun:b" }]);
    w.link.handle({ kind: "StartPeer" });
    expect(w.peers).toHaveLength(2);
    expect(w.peers[0]!.closed).toBe(true);
    expect(w.peers[1]!.iceServers).toEqual([{ urls: "stun:b" }]);
  });

  it("gives a warm peer the source's new track", () => {
    const w = setup();
    w.link.prepare();
    const next = track();
    w.setTrack(next);
    w.link.handle({ kind: "StartPeer" });
    expect(w.peers[0]!.replacedWith).toEqual([next]);
  });

  it("carries out the core's peer actions on the live peer", async () => {
    const w = setup();
    w.link.handle({ kind: "StartPeer" });
    const peer = w.peers[0]!;
    w.link.handle({ kind: "ApplyAnswer", sdp: "v=0 answer" });
    w.link.handle({ kind: "AddRemoteCandidate", candidate: { candidate: "candidate:2" } });
    w.link.handle({ kind: "RestartIce", turnConfig: { server_url: "turn:t" } });
    expect(peer.answers).toEqual(["v=0 answer"]);
    expect(peer.remoteCandidates).toEqual([{ candidate: "candidate:2" }]);
    expect(peer.restarts).toEqual([{ server_url: "turn:t" }]);
    peer.applyAnswer = () => Promise.reject(new Error("bad sdp"));
    w.link.handle({ kind: "ApplyAnswer", sdp: "x" });
    await flush();
    expect(w.inputs.at(-1)).toBe("peerState");
  });

  it("reports the remote stream, and its end when the peer closes; a closed peer says nothing more", () => {
    const w = setup();
    w.link.handle({ kind: "StartPeer" });
    const peer = w.peers[0]!;
    const stream = {} as MediaStream;
    peer.events.remoteStream(stream);
    expect(w.link.remoteStream).toBe(stream);
    w.link.handle({ kind: "ClosePeer" });
    expect(peer.closed).toBe(true);
    expect(w.link.remoteStream).toBeNull();
    expect(w.streams).toEqual([stream, null]);
    const before = w.inputs.length;
    peer.events.state("failed");
    peer.events.offer("late");
    peer.events.remoteStream(stream);
    expect(w.inputs).toHaveLength(before);
    expect(w.link.remoteStream).toBeNull();
  });

  it("ClosePeer also drops a warm peer", () => {
    const w = setup();
    w.link.prepare();
    w.link.handle({ kind: "ClosePeer" });
    expect(w.peers[0]!.closed).toBe(true);
  });

  it("polls the live peer's stats every STATS_INTERVAL_MS, and clears them when it closes", async () => {
    const w = setup();
    w.link.handle({ kind: "StartPeer" });
    const peer = w.peers[0]!;
    w.clock.advance(STATS_INTERVAL_MS / 1000);
    await flush();
    w.clock.advance(STATS_INTERVAL_MS / 1000);
    await flush();
    expect(peer.statsCalls).toBe(2);
    expect(w.stats.at(-1)).toEqual({ fps_in: 30, fps_out: 29, rtt_ms: 42, bitrate_kbps: 1000 });
    w.link.handle({ kind: "ClosePeer" });
    expect(w.stats.at(-1)).toBeNull();
    expect(w.clock.pending()).toBe(0);
  });

  it("dispose closes both peers and prepares no more", () => {
    const w = setup();
    w.link.handle({ kind: "StartPeer" });
    w.link.prepare(); // a live peer: nothing to prepare
    expect(w.peers).toHaveLength(1);
    w.link.dispose();
    expect(w.peers[0]!.closed).toBe(true);
    w.link.prepare();
    expect(w.peers).toHaveLength(1);
    expect(w.clock.pending()).toBe(0);
  });
});
