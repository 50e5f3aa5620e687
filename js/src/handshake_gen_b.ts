// Gen-B's handshake (transport "livekit"; docs/protocol.md, "Gen-B (LiveKit) handshake"), the twin
// of decart_widget/protocol/_handshake_gen_b.py.
// Once the socket opens the session asks for a room (livekit_join) and sends its initial state as
// a frame of its own; its ack is awaited as in Gen-A, but the room does not wait for it. With no
// prompt and no image the join is a passthrough one and there is nothing to ack. The server may
// first put the session in its queue (queue_position): every deadline pauses there. The room is
// joined (JoinRoom) when livekit_room_info comes, within roomInfoTimeout of the join (time in the
// queue not counted), or the attempt is lost. Gen-A's media messages are ignored.

import type { Action, PeerState, QueueStatus } from "./actions";
import type { HandshakeHost, MediaHandshake } from "./handshake";
import * as msg from "./messages";
import type { LivekitRoomInfoMessage, ServerMessage } from "./messages";

/** the room states that end it: a LiveKit client reports "disconnected" only after its own
 * reconnect attempts failed */
const LOST: readonly PeerState[] = ["failed", "closed", "disconnected"];

export class GenBHandshake implements MediaHandshake {
  readonly name = "livekit";
  started = false;
  queue: QueueStatus | null = null;
  readonly #host: HandshakeHost;
  readonly #roomInfoTimeout: number;
  #roomInfoDeadline: number | null = null;
  #queuedSince: number | null = null;

  constructor(host: HandshakeHost, roomInfoTimeout: number) {
    this.#host = host;
    this.#roomInfoTimeout = roomInfoTimeout;
  }

  begin(now: number): Action[] {
    this.#roomInfoDeadline = now + this.#roomInfoTimeout;
    const skipped = this.#host.skipInitialState(now);
    if (skipped) return [{ kind: "Send", message: msg.livekitJoin(true) }, ...skipped];
    return [{ kind: "Send", message: msg.livekitJoin(false) }, this.#host.sendInitialState(now)];
  }

  acked(_now: number): Action[] {
    return []; // the room is joined whenever its info comes
  }

  message(now: number, message: ServerMessage): Action[] | null {
    switch (message.type) {
      case "livekit_room_info":
        return this.#onRoomInfo(now, message);
      case "queue_position":
        return this.#onQueuePosition(now, message.position, message.queue_size);
      case "answer":
      case "ice-candidate":
      case "ice-restart":
      case "session_id":
        return []; // Gen-A's media messages mean nothing to a LiveKit session
      default:
        return null;
    }
  }

  localOffer(_sdp: string): Action[] {
    return [];
  }

  localCandidate(): Action[] {
    return [];
  }

  lost(state: PeerState): string | null {
    return LOST.includes(state) ? `room ${state}` : null;
  }

  nextDeadline(): number | null {
    return this.#roomInfoDeadline;
  }

  expired(now: number): string | null {
    const deadline = this.#roomInfoDeadline;
    return deadline !== null && now >= deadline ? `no room info within ${this.#roomInfoTimeout} s` : null;
  }

  close(now: number): Action[] {
    const actions: Action[] = this.started ? [{ kind: "ClosePeer" }] : [];
    this.started = false;
    this.#roomInfoDeadline = null;
    return [...actions, ...this.#leaveQueue(now)];
  }

  #onQueuePosition(now: number, position: number, size: number | null): Action[] {
    if (this.started) return []; // a queue_position after the room info
    if (this.#queuedSince === null) this.#queuedSince = now;
    this.queue = { position, size };
    return [{ kind: "Emit", name: "queue", value: { position, size } }];
  }

  /** Out of the server's queue (the room info came, or the socket is gone): the core's paused
   * deadlines resume where they stopped. */
  #leaveQueue(now: number): Action[] {
    if (this.#queuedSince !== null) {
      this.#host.postpone(now - this.#queuedSince);
      this.#queuedSince = null;
    }
    if (this.queue === null) return [];
    this.queue = null;
    return [{ kind: "Emit", name: "queue", value: null }];
  }

  #onRoomInfo(now: number, info: LivekitRoomInfoMessage): Action[] {
    if (this.started) return []; // a second room info
    const actions = this.#leaveQueue(now);
    this.#roomInfoDeadline = null;
    this.started = true;
    this.#host.awaitMedia(now);
    actions.push({ kind: "JoinRoom", url: info.livekit_url, token: info.token, roomName: info.room_name, sessionId: info.session_id });
    if (info.session_id !== null) actions.push(...this.#host.newSessionId(info.session_id));
    return actions;
  }
}
