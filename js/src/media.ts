// The media transport: how the camera's video reaches the model and the output comes back. It is
// the second axis of a session, independent of the signaling mode (transports.ts): any signaling
// mode carries the same control frames, and any media transport rides on them. There
// are two, picked by the `transport` traitlet: WebRTC with SDP over the signaling link ("Gen-A",
// peer_link.ts) and a LiveKit room ("Gen-B", livekit_link.ts). The session core's media actions
// reach the link through `handle`, and it reports back through the same MediaHost.

import type { Clock, Input } from "./core_loop";
import type { DecartError } from "./errors";
import type { Action } from "./session";
import type { Stats } from "./stats";

const MEDIA_KINDS = ["StartPeer", "ClosePeer", "JoinRoom", "ApplyAnswer", "AddRemoteCandidate", "RestartIce"] as const;

/** The session core's actions that a media link carries out. */
export type MediaAction = Extract<Action, { kind: (typeof MEDIA_KINDS)[number] }>;

export function isMediaAction(action: Action): action is MediaAction {
  return (MEDIA_KINDS as readonly string[]).includes(action.kind);
}

/** What a media link needs from the widget. */
export interface MediaHost {
  clock: Clock;
  /** feed the session core (local offers, candidates, media state) */
  toCore(input: Input): void;
  /** the input track to send now (null before the source is open) */
  track(): MediaStreamTrack | null;
  iceServers(): RTCIceServer[];
  /** the transformed video arrived, or went (null) */
  remoteStream(stream: MediaStream | null): void;
  /** a new sample of the media statistics; null: none any more */
  stats(stats: Stats | null): void;
  /** a module the page loads on demand (asset_loader.ts), e.g. "livekit" */
  loadAsset(name: string): Promise<unknown>;
  /** Start importing an asset from the page's server ahead of need (never from the kernel). */
  warmAsset?(name: string): void;
  /** end the session for a reason the core cannot see (an asset that cannot load) */
  fail(error: DecartError): void;
}

/** One widget's media: at most one live connection (and one prepared ahead) at a time. */
export interface MediaLink {
  /** The transformed video, while a connection delivers it. */
  readonly remoteStream: MediaStream | null;
  /** A session starts (its source, credential and socket are on their way): load the link's code
   * if it is not in the page yet (lazy_media.ts). */
  preload(): void;
  /** The signaling link started connecting: prepare what the handshake will ask for. */
  prepare(): void;
  handle(action: MediaAction): void;
  /** The input source changed under a running session. */
  replaceTrack(track: MediaStreamTrack | null): Promise<void>;
  /** Drop what was prepared for the current source (it is being released). */
  discardPrepared(): void;
  /** The widget is gone: close everything. */
  dispose(): void;
}

export interface MediaTransport {
  open(host: MediaHost): MediaLink;
}

/** The link of a transport this front end does not know: it does nothing (start() says why). */
export const NO_MEDIA: MediaTransport = {
  open: () => ({
    remoteStream: null,
    preload() {},
    prepare() {},
    handle() {},
    replaceTrack: async () => {},
    discardPrepared() {},
    dispose() {},
  }),
};
