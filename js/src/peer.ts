// The WebRTC side of a session: one RTCPeerConnection that sends the input track and receives
// the transformed video. It reports offers, trickled candidates (ending with null) and state
// changes; the session core decides what to do with them.

import type { IceCandidateInfo, TurnConfig } from "./messages";
import type { PeerState } from "./session";

export interface PeerEvents {
  offer(sdp: string): void;
  candidate(candidate: IceCandidateInfo | null): void;
  state(state: PeerState): void;
  remoteStream(stream: MediaStream): void;
}

export interface Peer {
  start(track: MediaStreamTrack | null): Promise<void>;
  applyAnswer(sdp: string): Promise<void>;
  addRemoteCandidate(candidate: IceCandidateInfo | null): Promise<void>;
  restartIce(turn: TurnConfig | null): Promise<void>;
  replaceTrack(track: MediaStreamTrack | null): Promise<void>;
  getStats(): Promise<RTCStatsReport> | null;
  close(): void;
}

export type PeerFactory = (iceServers: RTCIceServer[], events: PeerEvents) => Peer;

/**
 * A peer's events, held until a session takes the peer. A peer created while the socket opens
 * has its offer (and first candidates) ready when the handshake asks for them; nothing may reach
 * the service before that, and then everything in the order it happened.
 */
export class HeldPeerEvents implements PeerEvents {
  private target: PeerEvents | null = null;
  private held: ((events: PeerEvents) => void)[] = [];

  offer(sdp: string): void {
    this.emit((events) => events.offer(sdp));
  }

  candidate(candidate: IceCandidateInfo | null): void {
    this.emit((events) => events.candidate(candidate));
  }

  state(state: PeerState): void {
    this.emit((events) => events.state(state));
  }

  remoteStream(stream: MediaStream): void {
    this.emit((events) => events.remoteStream(stream));
  }

  /** Deliver what was held to `target`, then pass every later event straight on. */
  release(target: PeerEvents): void {
    this.target = target;
    const held = this.held;
    this.held = [];
    for (const event of held) event(target);
  }

  private emit(event: (events: PeerEvents) => void): void {
    if (this.target) event(this.target);
    else this.held.push(event);
  }
}

/** The codec list with `mimeType` codecs first, the rest (rtx, red, fec, ...) kept after. */
export function preferCodec<T extends { mimeType: string }>(codecs: readonly T[], mimeType: string): T[] {
  const wanted = mimeType.toLowerCase();
  const first = codecs.filter((c) => c.mimeType.toLowerCase() === wanted);
  return [...first, ...codecs.filter((c) => c.mimeType.toLowerCase() !== wanted)];
}

export function turnServer(turn: TurnConfig): RTCIceServer {
  const server: RTCIceServer = { urls: turn.server_url };
  if (turn.username !== undefined) server.username = turn.username;
  if (turn.credential !== undefined) server.credential = turn.credential;
  return server;
}

export class BrowserPeer implements Peer {
  private pc: RTCPeerConnection | null = null;
  private transceiver: RTCRtpTransceiver | null = null;
  /** remote candidates that arrived before the answer */
  private early: (IceCandidateInfo | null)[] = [];
  /** serialises the async SDP steps so answers and candidates apply in order */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private iceServers: RTCIceServer[],
    private readonly events: PeerEvents,
  ) {}

  async start(track: MediaStreamTrack | null): Promise<void> {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    pc.onicecandidate = (event) => {
      if (this.pc !== pc) return;
      this.events.candidate(event.candidate ? (event.candidate.toJSON() as IceCandidateInfo) : null);
    };
    pc.onconnectionstatechange = () => {
      if (this.pc === pc) this.events.state(pc.connectionState as PeerState);
    };
    pc.ontrack = (event) => {
      if (this.pc === pc) this.events.remoteStream(event.streams[0] ?? new MediaStream([event.track]));
    };
    this.transceiver = pc.addTransceiver(track ?? "video", { direction: "sendrecv" });
    this.preferVp8();
    await this.offer(false);
  }

  applyAnswer(sdp: string): Promise<void> {
    return this.enqueue(async (pc) => {
      await pc.setRemoteDescription({ type: "answer", sdp });
      const early = this.early;
      this.early = [];
      for (const candidate of early) await this.addCandidate(pc, candidate);
    });
  }

  addRemoteCandidate(candidate: IceCandidateInfo | null): Promise<void> {
    return this.enqueue(async (pc) => {
      if (pc.remoteDescription) await this.addCandidate(pc, candidate);
      else this.early.push(candidate);
    });
  }

  restartIce(turn: TurnConfig | null): Promise<void> {
    return this.enqueue(async (pc) => {
      if (turn) {
        this.iceServers = [...this.iceServers, turnServer(turn)];
        pc.setConfiguration({ ...pc.getConfiguration(), iceServers: this.iceServers });
      }
      this.early = [];
      await this.offer(true);
    });
  }

  async replaceTrack(track: MediaStreamTrack | null): Promise<void> {
    await this.transceiver?.sender.replaceTrack(track);
  }

  getStats(): Promise<RTCStatsReport> | null {
    return this.pc ? this.pc.getStats() : null;
  }

  close(): void {
    const pc = this.pc;
    this.pc = null;
    this.transceiver = null;
    this.early = [];
    if (!pc) return;
    pc.onicecandidate = pc.onconnectionstatechange = pc.ontrack = null;
    pc.close();
  }

  private async offer(iceRestart: boolean): Promise<void> {
    const pc = this.pc;
    if (!pc) return;
    const description = await pc.createOffer({ iceRestart });
    await pc.setLocalDescription(description);
    if (this.pc === pc && pc.localDescription) this.events.offer(pc.localDescription.sdp);
  }

  private preferVp8(): void {
    const capabilities = globalThis.RTCRtpReceiver?.getCapabilities?.("video");
    if (!capabilities || !this.transceiver?.setCodecPreferences) return;
    try {
      this.transceiver.setCodecPreferences(preferCodec(capabilities.codecs, "video/VP8"));
    } catch {
      // a browser that rejects the list still negotiates its own default
    }
  }

  private async addCandidate(pc: RTCPeerConnection, candidate: IceCandidateInfo | null): Promise<void> {
    try {
      // no argument: end of candidates
      await (candidate ? pc.addIceCandidate(candidate) : pc.addIceCandidate());
    } catch {
      // a candidate the browser cannot use is not fatal; ICE fails visibly if none works
    }
  }

  private enqueue(step: (pc: RTCPeerConnection) => Promise<void>): Promise<void> {
    const run = async (): Promise<void> => {
      const pc = this.pc;
      if (pc) await step(pc);
    };
    this.chain = this.chain.then(run, run);
    return this.chain;
  }
}

export const createBrowserPeer: PeerFactory = (iceServers, events) => new BrowserPeer(iceServers, events);
