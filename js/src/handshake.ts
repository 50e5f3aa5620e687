// How a session reaches its media: one handshake object per media transport (the twin of
// decart_widget/protocol/_handshake.py, with the same names).
// The session core (session.ts) runs the control half of the protocol -- requests, acks, ticks,
// errors, retries, replay -- the same way for every media transport. What differs is the
// handshake (docs/protocol.md): what goes out once the socket opens, when the media link starts,
// which server messages belong to it. A MediaHandshake holds those rules and their state; the core
// builds one from the transport's name (handshakeFor) and delegates to it, never asking which one
// it holds:
// * GenAHandshake ("webrtc", handshake_gen_a.ts): the initial state, then, once it is answered,
//   the peer connection, whose SDP offer/answer and ICE candidates use the same socket;
// * GenBHandshake ("livekit", handshake_gen_b.ts): livekit_join and the initial state as its own
//   frame; the room is joined on livekit_room_info, whenever that comes.
// A handshake acts on its core only through the HandshakeHost it is given. Like the core, the
// handshakes keep their private state in #fields, whose names esbuild shortens: widget.js has a
// size budget (tests/unit/test_bundle_budget.py).

import type { Action, PeerState, QueueStatus } from "./actions";
import { MEDIA_TRANSPORTS, type MediaTransportName } from "./constants";
import { InvalidInput } from "./errors";
import { GenAHandshake } from "./handshake_gen_a";
import { GenBHandshake } from "./handshake_gen_b";
import type { IceCandidateInfo, ServerMessage } from "./messages";

/** What a handshake may ask of its session core. */
export interface HandshakeHost {
  /** send the whole desired state as the first frame; its ack ends the handshake (acked) */
  sendInitialState(now: number): Action;
  /** when the desired state is empty, end the handshake with no frame: the settlements of the
   * requests that rode on it, or null when there is a state to send */
  skipInitialState(now: number): Action[] | null;
  /** the media link was started: its connect deadline runs from `now` */
  awaitMedia(now: number): void;
  /** the server named its session: the actions that publish it */
  newSessionId(sessionId: string): Action[];
  /** the session waited this many seconds in the server's queue: its deadlines move by as much */
  postpone(seconds: number): void;
}

/** One media transport's handshake (see the module comment). */
export interface MediaHandshake {
  /** the media transport's name (MEDIA_TRANSPORTS) */
  readonly name: MediaTransportName;
  /** the media link (peer connection, room) was started and is not closed */
  readonly started: boolean;
  /** the place in the server's queue while the session waits there, else null; every deadline of
   * the session pauses meanwhile */
  readonly queue: Readonly<QueueStatus> | null;
  /** the socket opened: the first frames */
  begin(now: number): Action[];
  /** the initial state was answered (accepted or not): requests may go out now */
  acked(now: number): Action[];
  /** handle a message of the media handshake; null when the message is not one */
  message(now: number, message: ServerMessage): Action[] | null;
  /** the local peer connection's offer */
  localOffer(sdp: string): Action[];
  /** a local ICE candidate (null: the end of them) */
  localCandidate(candidate: IceCandidateInfo | null): Action[];
  /** why the media link is gone if its state means so, else null */
  lost(state: PeerState): string | null;
  /** the handshake's own deadline, if any */
  nextDeadline(): number | null;
  /** why the session lost its connection if the handshake's deadline passed, else null */
  expired(now: number): string | null;
  /** the socket is gone: close the media link, forget the handshake */
  close(now: number): Action[];
}

const HANDSHAKES: Record<MediaTransportName, (host: HandshakeHost, roomInfoTimeout: number) => MediaHandshake> = {
  webrtc: (host) => new GenAHandshake(host),
  livekit: (host, roomInfoTimeout) => new GenBHandshake(host, roomInfoTimeout),
};

/** The handshake of the media transport named `transport`. */
export function handshakeFor(transport: MediaTransportName, host: HandshakeHost, roomInfoTimeout: number): MediaHandshake {
  if (!MEDIA_TRANSPORTS.includes(transport)) {
    throw new InvalidInput(`media transport must be ${MEDIA_TRANSPORTS.map((t) => `"${t}"`).join(" or ")}, got ${String(transport)}`);
  }
  return HANDSHAKES[transport](host, roomInfoTimeout);
}
