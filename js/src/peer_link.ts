// The WebRTC media link ("Gen-A", media.ts): one RTCPeerConnection per server session, the
// "warm" peer made while the socket connects and taken by the handshake's StartPeer, and the
// stats polled from the live peer. Each peer has its own AbortController: a closed peer's late
// events and stats never reach the session core or the traitlets.

import { debug } from "./log";
import type { MediaAction, MediaHost, MediaLink, MediaTransport } from "./media";
import { HeldPeerEvents, type Peer, type PeerEvents, type PeerFactory } from "./peer";
import { pollStats, type StatsEntry } from "./stats";

export { STATS_INTERVAL_MS } from "./stats";

/** A peer created ahead of the handshake, with what it was created from. */
interface WarmPeer {
  peer: Peer;
  events: HeldPeerEvents;
  started: Promise<void>;
  track: MediaStreamTrack | null;
  iceServers: string;
}

export class PeerLink implements MediaLink {
  remoteStream: MediaStream | null = null;
  private peer: Peer | null = null;
  /** the live peer's life: aborted when it closes */
  private life: AbortController | null = null;
  /** a peer made ready while the socket opens, taken by the handshake's StartPeer */
  private warm: WarmPeer | null = null;
  private disposed = false;

  constructor(
    private readonly createPeer: PeerFactory,
    private readonly host: MediaHost,
  ) {}

  handle(action: MediaAction): void {
    switch (action.kind) {
      case "StartPeer":
        this.start();
        break;
      case "ClosePeer":
        this.close();
        this.discardPrepared();
        break;
      case "ApplyAnswer":
        this.peer?.applyAnswer(action.sdp).catch((error) => this.failed(error));
        break;
      case "AddRemoteCandidate":
        void this.peer?.addRemoteCandidate(action.candidate);
        break;
      case "RestartIce":
        this.peer?.restartIce(action.turnConfig).catch((error) => this.failed(error));
        break;
    }
  }

  preload(): void {
    // the code is loaded: this link is the asset
  }

  /**
   * Create the peer connection and its offer while the socket connects and the initial state is
   * acknowledged: a browser takes tens of milliseconds to set up its first RTCPeerConnection, and
   * the handshake would otherwise wait for it after the ack. Its events are held until StartPeer.
   */
  prepare(): void {
    if (this.warm || this.peer || this.disposed) return;
    const events = new HeldPeerEvents();
    const iceServers = this.host.iceServers();
    const peer = this.createPeer(iceServers, events);
    const track = this.host.track();
    const started = peer.start(track);
    started.catch(() => undefined); // reported when the handshake takes the peer
    this.warm = { peer, events, started, track, iceServers: JSON.stringify(iceServers) };
  }

  discardPrepared(): void {
    this.warm?.peer.close();
    this.warm = null;
  }

  async replaceTrack(track: MediaStreamTrack | null): Promise<void> {
    await this.peer?.replaceTrack(track);
  }

  dispose(): void {
    this.close();
    this.discardPrepared();
    this.disposed = true;
  }

  private start(): void {
    this.close();
    const life = new AbortController();
    this.life = life;
    const live = (): boolean => !life.signal.aborted;
    const events: PeerEvents = {
      offer: (sdp) => live() && this.host.toCore((s, now) => s.localOffer(now, sdp)),
      candidate: (candidate) => live() && this.host.toCore((s, now) => s.localCandidate(now, candidate)),
      state: (state) => live() && this.host.toCore((s, now) => s.peerState(now, state)),
      remoteStream: (stream) => {
        if (!live()) return;
        this.remoteStream = stream;
        this.host.remoteStream(stream);
      },
    };
    const warm = this.takeWarm();
    const track = this.host.track();
    let started: Promise<void>;
    if (warm) {
      this.peer = warm.peer;
      started = warm.started;
      if (warm.track !== track) void warm.peer.replaceTrack(track); // the source changed meanwhile
      warm.events.release(events);
    } else {
      this.peer = this.createPeer(this.host.iceServers(), events);
      started = this.peer.start(track);
    }
    started.catch((error) => {
      if (live()) this.failed(error);
    });
    this.pollStats(life.signal);
  }

  /** The warm peer, if it still fits the widget's settings. */
  private takeWarm(): WarmPeer | null {
    const warm = this.warm;
    this.warm = null;
    if (warm && warm.iceServers !== JSON.stringify(this.host.iceServers())) {
      warm.peer.close();
      return null;
    }
    return warm;
  }

  private failed(error: unknown): void {
    debug("peer connection step failed:", error);
    if (this.peer) this.host.toCore((s, now) => s.peerState(now, "failed"));
  }

  private close(): void {
    if (this.life) {
      this.life.abort();
      this.life = null;
      this.host.stats(null);
    }
    const peer = this.peer;
    this.peer = null;
    peer?.close();
    if (this.remoteStream) {
      this.remoteStream = null;
      this.host.remoteStream(null);
    }
  }

  private pollStats(signal: AbortSignal): void {
    pollStats(
      this.host.clock,
      signal,
      async () => ((await this.peer?.getStats())?.values() as Iterable<StatsEntry> | undefined) ?? null,
      (stats) => this.host.stats(stats),
      (error) => debug("getStats failed:", error),
    );
  }
}

/** WebRTC with SDP and ICE over the signaling link: the media transport of Gen-A sessions. */
export function webrtcMedia(createPeer: PeerFactory): MediaTransport {
  return { open: (host) => new PeerLink(createPeer, host) };
}
