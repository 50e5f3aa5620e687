// The LiveKit media link ("Gen-B", media.ts; docs/protocol.md "Gen-B (LiveKit) handshake"): the
// control socket's handshake ends in the core's JoinRoom {url, token}; this link joins that room,
// publishes the widget's source track and shows the video of the participant whose identity
// starts with `inference-server-`. It is part of the LiveKit asset (livekit_room.ts), not of
// widget.js: lazy_media.ts loads it when a Gen-B session starts. Each room has its own
// AbortController: a closed room's late events and stats never reach the core or the traitlets.

import type { CreateRoom, LiveRoom, RoomConnection } from "./livekit_api";
import { debug } from "./log";
import type { MediaAction, MediaHost, MediaLink, MediaTransport } from "./media";
import { pollStats, type StatsEntry } from "./stats";

/** Identities of the participant that publishes the model's output. */
export const INFERENCE_PREFIX = "inference-server-";

/** The core's action that starts the room, with the handshake's livekit_room_info. */
export type JoinRoom = Extract<MediaAction, { kind: "JoinRoom" }>;

export class LiveKitLink implements MediaLink {
  remoteStream: MediaStream | null = null;
  private room: LiveRoom | null = null;
  /** the current room's life: aborted when it closes */
  private life: AbortController | null = null;

  constructor(
    private readonly host: MediaHost,
    private readonly createRoom: CreateRoom,
  ) {}

  preload(): void {
    // the code is loaded: this link is the asset
  }

  prepare(): void {
    // nothing to make ahead: the room's address comes with the handshake's end
  }

  handle(action: MediaAction): void {
    if (action.kind === "JoinRoom") void this.join(action);
    else if (action.kind === "ClosePeer") this.close();
    // the WebRTC actions (StartPeer, answers, candidates) have no meaning in a room
  }

  async replaceTrack(track: MediaStreamTrack | null): Promise<void> {
    if (track && this.room && this.life) await this.room.publish(track);
  }

  discardPrepared(): void {
    // nothing is made per source ahead of the join; the loaded asset is the page's
  }

  dispose(): void {
    this.close();
  }

  private async join(action: JoinRoom): Promise<void> {
    this.close();
    const life = new AbortController();
    this.life = life;
    const live = (): boolean => !life.signal.aborted;
    const room = this.createRoom({
      videoTrack: (identity, track) => {
        if (live() && identity.startsWith(INFERENCE_PREFIX)) this.showRemote(new MediaStream([track]));
      },
      videoTrackGone: (_identity, track) => {
        if (live() && this.remoteStream?.getVideoTracks().includes(track)) this.showRemote(null);
      },
      connection: (state) => live() && this.connection(state),
    });
    this.room = room;
    try {
      await room.join(action.url, action.token, this.host.iceServers());
      const track = this.host.track();
      if (live() && track) await room.publish(track);
    } catch (error) {
      if (live()) this.failed(error);
      return;
    }
    if (!live()) return;
    this.host.toCore((s, now) => s.peerState(now, "connected"));
    pollStats(
      this.host.clock,
      life.signal,
      async () => (await room.statsReports()).flatMap((report) => [...report.values()] as StatsEntry[]),
      (stats) => this.host.stats(stats),
      (error) => debug("room stats failed:", error),
    );
  }

  private connection(state: RoomConnection): void {
    if (state === "lost") this.failed("the room disconnected");
    else this.host.toCore((s, now) => s.peerState(now, state === "reconnecting" ? "disconnected" : "connected"));
  }

  private showRemote(stream: MediaStream | null): void {
    this.remoteStream = stream;
    this.host.remoteStream(stream);
  }

  /** The room is lost: leave it (its later events are stale) and tell the core. */
  private failed(error: unknown): void {
    debug("LiveKit room failed:", error);
    this.close();
    this.host.toCore((s, now) => s.peerState(now, "failed"));
  }

  private close(): void {
    if (this.life) {
      this.life.abort();
      this.life = null;
      this.host.stats(null);
    }
    const room = this.room;
    this.room = null;
    room?.close().catch((error) => debug("leaving the room failed:", error));
    if (this.remoteStream) this.showRemote(null);
  }
}

/** A LiveKit room joined with the room token the handshake gives: the media of Gen-B sessions. */
export function livekitMedia(createRoom: CreateRoom): MediaTransport {
  return { open: (host) => new LiveKitLink(host, createRoom) };
}
