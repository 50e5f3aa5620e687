// Gen-A's handshake (transport "webrtc"; docs/protocol.md, "Gen-A (WebRTC) handshake"), the twin
// of decart_widget/protocol/_handshake_gen_a.py.
// Once the socket opens the initial state goes out; once it is answered (accepted or not) the peer
// connection starts (StartPeer), and its SDP offer and answer and its ICE candidates travel over
// the same socket. Candidates that arrive before the answer wait for it (a peer connection cannot
// take them earlier); an ice-restart rebuilds ICE with the server's TURN relay and re-offers.

import type { Action, PeerState } from "./actions";
import type { HandshakeHost, MediaHandshake } from "./handshake";
import * as msg from "./messages";
import type { IceCandidateInfo, ServerMessage } from "./messages";

/** the peer connection states that end it ("disconnected" is not one: ICE often recovers) */
const LOST: readonly PeerState[] = ["failed", "closed"];

export class GenAHandshake implements MediaHandshake {
  readonly name = "webrtc";
  readonly queue = null; // Gen-A has no server queue
  started = false;
  readonly #host: HandshakeHost;
  #answered = false;
  #earlyCandidates: (IceCandidateInfo | null)[] = [];

  constructor(host: HandshakeHost) {
    this.#host = host;
  }

  begin(now: number): Action[] {
    return [this.#host.sendInitialState(now)];
  }

  acked(now: number): Action[] {
    this.started = true;
    this.#host.awaitMedia(now);
    return [{ kind: "StartPeer" }];
  }

  message(_now: number, message: ServerMessage): Action[] | null {
    switch (message.type) {
      case "answer":
        return this.#onAnswer(message.sdp);
      case "ice-candidate":
        if (!this.#answered) {
          this.#earlyCandidates.push(message.candidate);
          return [];
        }
        return [{ kind: "AddRemoteCandidate", candidate: message.candidate }];
      case "ice-restart":
        if (!this.started) return [];
        this.#answered = false;
        return [{ kind: "RestartIce", turnConfig: message.turn_config }];
      case "session_id":
        return this.#host.newSessionId(message.session_id);
      default:
        return null;
    }
  }

  localOffer(sdp: string): Action[] {
    return this.started ? [{ kind: "Send", message: msg.offer(sdp) }] : [];
  }

  localCandidate(candidate: IceCandidateInfo | null): Action[] {
    return this.started ? [{ kind: "Send", message: msg.iceCandidate(candidate) }] : [];
  }

  lost(state: PeerState): string | null {
    return LOST.includes(state) ? `peer connection ${state}` : null;
  }

  nextDeadline(): number | null {
    return null;
  }

  expired(_now: number): string | null {
    return null;
  }

  close(_now: number): Action[] {
    const actions: Action[] = this.started ? [{ kind: "ClosePeer" }] : [];
    this.started = false;
    this.#answered = false;
    this.#earlyCandidates = [];
    return actions;
  }

  #onAnswer(sdp: string): Action[] {
    if (!this.started || this.#answered) return []; // an unexpected answer
    this.#answered = true;
    const early = this.#earlyCandidates;
    this.#earlyCandidates = [];
    return [{ kind: "ApplyAnswer", sdp }, ...early.map((candidate): Action => ({ kind: "AddRemoteCandidate", candidate }))];
  }
}
