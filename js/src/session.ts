// The sans-I/O session core (docs/architecture.md "The session core"), the TypeScript twin of
// decart_widget/protocol/_session.py: same states, requests, timeouts, retries and errors.
// It never touches a socket, a timer or a clock: every input carries `now` (monotonic seconds)
// and returns the actions for the adapter to carry out, in order. Timers are deadlines: the
// adapter asks nextDeadline() and calls onTimer(now) once it has passed.
// The core runs the control half of the protocol (requests, acks, ticks, errors, retries, replay),
// the same for every media transport. The media handshake is an object chosen once, at
// construction, from the transport's name (handshake.ts): "webrtc" (Gen-A: SDP offer/answer over
// the socket, StartPeer once the initial state is acked) or "livekit" (Gen-B: livekit_join, the
// initial state as its own frame, JoinRoom on livekit_room_info; docs/protocol.md). The core
// delegates to it and never asks which one it holds. How long connecting may take and when to try
// again is attempts.ts; a session that never connected stays "connecting" between attempts.
// Private state is in #fields, whose names esbuild shortens (widget.js has a size budget).

import { BACKOFF, CLOSE_NORMAL, CLOSE_PROXY_CONCURRENCY, CLOSE_TRY_AGAIN_LATER, CONNECT_TIMEOUT, IMAGE_ACK_TIMEOUT } from "./constants";
import { INITIAL_ACK_TIMEOUT, MEDIA_CONNECT_TIMEOUT, PROMPT_ACK_TIMEOUT, ROOM_INFO_TIMEOUT, SIGNALING_OPEN_TIMEOUT } from "./constants";
import type { MediaTransportName } from "./constants";
import { type Action, type ConnectionState, type PeerState, type QueueStatus, emitError, fail, resolve } from "./actions";
import { Attempts } from "./attempts";
import { ConcurrencyLimit, type DecartError, classify, endedError, permanentError } from "./errors";
import { type MediaHandshake, handshakeFor } from "./handshake";
import type { IceCandidateInfo, ServerMessage } from "./messages";
import { apply, cleanImage, cleanPrompt, imageChange, promptChange, type Change, type Settings } from "./requests";
import { type Settlement, UpdateQueue } from "./update_queue";

export type { Action, ConnectionState, EmitAction, PeerState, QueueStatus } from "./actions";
export { BACKOFF, CLOSE_PROXY_CONCURRENCY, CLOSE_TRY_AGAIN_LATER, CONNECT_TIMEOUT, IMAGE_ACK_TIMEOUT } from "./constants";
export { INITIAL_ACK_TIMEOUT, MEDIA_CONNECT_TIMEOUT, PROMPT_ACK_TIMEOUT, ROOM_INFO_TIMEOUT, SIGNALING_OPEN_TIMEOUT } from "./constants";
export type { MediaTransportName } from "./constants";

/** What a session starts from, and its limits (the defaults are the protocol's). */
export interface SessionOptions {
  prompt?: string | null;
  image?: string | null;
  enhance?: boolean;
  promptAckTimeout?: number;
  imageAckTimeout?: number;
  initialAckTimeout?: number;
  connectTimeout?: number;
  /** seconds before each reconnect attempt; its length is the number of retries */
  backoff?: readonly number[];
  /** the media transport: "webrtc" (Gen-A, the default) or "livekit" (Gen-B) */
  transport?: MediaTransportName;
  /** Gen-B: seconds from the join to the room info (paused while queued) */
  roomInfoTimeout?: number;
  /** per attempt: seconds for the socket to open */
  signalingOpenTimeout?: number;
  /** per attempt: seconds for the media to connect once started */
  mediaConnectTimeout?: number;
}

/** What the model should run with (desired) or is known to run with (accepted). */
export interface MediaState extends Settings {
  enhance: boolean;
}

export interface RequestResult {
  requestId: number;
  actions: Action[];
}

type Phase =
  | "idle" // not started, or ended
  | "opening" // OpenSocket issued, waiting for socketOpened
  | "handshake" // initial state sent, waiting for its ack
  | "running" // initial state answered: requests may go out
  | "backoff"; // waiting to retry

export class Session {
  readonly #updates: UpdateQueue;
  readonly #handshake: MediaHandshake;
  readonly #attempts: Attempts;
  #current: ConnectionState = "disconnected";
  #phase: Phase = "idle";
  #lastRequestId = 0;
  #serverError: string | null = null; // this attempt's last transient server error text
  #socket = false; // a socket is open or opening
  #secondsBefore = 0; // generation seconds of the server sessions before this one
  #seconds = 0; // the current server session's generation seconds
  #sessionIdValue: string | null = null;

  constructor(options: SessionOptions = {}) {
    const base = { prompt: cleanPrompt(options.prompt ?? null), image: cleanImage(options.image ?? null) };
    this.#updates = new UpdateQueue(base, options.enhance ?? true, {
      promptAck: options.promptAckTimeout ?? PROMPT_ACK_TIMEOUT,
      imageAck: options.imageAckTimeout ?? IMAGE_ACK_TIMEOUT,
    });
    this.#attempts = new Attempts({
      connect: options.connectTimeout ?? CONNECT_TIMEOUT,
      open: options.signalingOpenTimeout ?? SIGNALING_OPEN_TIMEOUT,
      media: options.mediaConnectTimeout ?? MEDIA_CONNECT_TIMEOUT,
      backoff: options.backoff ?? BACKOFF,
    });
    const initialAckTimeout = options.initialAckTimeout ?? INITIAL_ACK_TIMEOUT;
    const host = {
      sendInitialState: (now: number) => this.#updates.handshake(now, initialAckTimeout),
      skipInitialState: (now: number) => this.#skipInitialState(now),
      awaitMedia: (now: number) => this.#attempts.awaitMedia(now),
      newSessionId: (sessionId: string) => this.#newSessionId(sessionId),
      postpone: (seconds: number) => this.#postpone(seconds),
    };
    this.#handshake = handshakeFor(options.transport ?? "webrtc", host, options.roomInfoTimeout ?? ROOM_INFO_TIMEOUT);
  }

  // ---- properties ----------------------------------------------------------------------------

  get state(): ConnectionState {
    return this.#current;
  }

  /** The state the user asked for (what a reconnect replays). */
  get desired(): Readonly<MediaState> {
    return { ...this.#updates.desired, enhance: this.#updates.enhance };
  }

  /** The last state the server acknowledged. */
  get accepted(): Readonly<MediaState> {
    return { ...this.#updates.accepted, enhance: this.#updates.enhance };
  }

  /** Seconds generated since start(), summed over every server session (reconnects). */
  get generationSeconds(): number {
    return this.#secondsBefore + this.#seconds;
  }

  get sessionId(): string | null {
    return this.#sessionIdValue;
  }

  /** The media transport: "webrtc" (Gen-A) or "livekit" (Gen-B). */
  get transport(): MediaTransportName {
    return this.#handshake.name;
  }

  /** Gen-B: the place in the server's queue, null when not queued. */
  get queue(): Readonly<QueueStatus> | null {
    return this.#handshake.queue;
  }

  /** Reconnect attempts used since the session last reached `generating`. */
  get retriesUsed(): number {
    return this.#attempts.retries;
  }

  /** The earliest time onTimer must be called, or null (always while queued). */
  nextDeadline(): number | null {
    if (this.#handshake.queue !== null) return null;
    const deadlines = [this.#attempts.nextDeadline(), this.#updates.nextDeadline(), this.#handshake.nextDeadline()];
    const set = deadlines.filter((d): d is number => d !== null);
    return set.length ? Math.min(...set) : null;
  }

  // ---- user inputs ---------------------------------------------------------------------------

  start(now: number): Action[] {
    if (this.#phase !== "idle") return [];
    this.#attempts.start(now);
    this.#updates.restart();
    this.#secondsBefore = this.#seconds = 0;
    this.#sessionIdValue = null;
    return [...this.#setState("connecting"), ...this.#open(now)];
  }

  stop(now: number): Action[] {
    return this.#phase === "idle" ? [] : this.#end(now, null);
  }

  /** Set the prompt (null clears it; blank is InvalidInput); `enhance` undefined keeps the flag. */
  setPrompt(now: number, text: string | null, enhance?: boolean): RequestResult {
    return this.#request(now, () => promptChange(text), enhance);
  }

  /** Set (raw base64) or clear (null) the image; `prompt` undefined or null keeps the prompt,
   * a blank one clears it. */
  setImage(now: number, image: string | null, prompt?: string | null, enhance?: boolean): RequestResult {
    return this.#request(now, () => imageChange(image, prompt), enhance);
  }

  // ---- transport inputs ----------------------------------------------------------------------

  socketOpened(now: number): Action[] {
    if (this.#phase !== "opening") return [];
    this.#phase = "handshake";
    this.#attempts.socketOpened();
    return this.#handshake.begin(now);
  }

  socketClosed(now: number, code: number | null, reason = ""): Action[] {
    if (this.#phase === "idle" || this.#phase === "backoff" || !this.#socket) return [];
    this.#socket = false;
    if (code === CLOSE_TRY_AGAIN_LATER || code === CLOSE_PROXY_CONCURRENCY) {
      return this.#end(now, new ConcurrencyLimit(reason || "Concurrent session limit reached."));
    }
    const error = reason ? permanentError(reason) : null;
    if (error) return this.#end(now, error);
    const why = code === null ? reason || "could not connect" : `socket closed (code ${code}${reason ? `: ${reason}` : ""})`;
    return this.#lose(now, why);
  }

  message(now: number, message: ServerMessage): Action[] {
    if (this.#phase !== "handshake" && this.#phase !== "running") return [];
    switch (message.type) {
      case "prompt_ack":
        return this.#settled(now, this.#updates.promptAck(message));
      case "set_image_ack":
        return this.#settled(now, this.#updates.imageAck(message));
    }
    const media = this.#handshake.message(now, message);
    if (media) return media;
    switch (message.type) {
      case "generation_started":
        return this.#setState("generating");
      case "generation_tick":
        this.#seconds = Math.trunc(message.seconds);
        return [...this.#setState("generating"), { kind: "Emit", name: "generation_tick", value: this.generationSeconds }];
      case "generation_ended":
        this.#seconds = Math.max(this.#seconds, Math.trunc(message.seconds));
        return [
          { kind: "Emit", name: "generation_tick", value: this.generationSeconds },
          { kind: "Emit", name: "generation_ended", value: message.reason },
          ...this.#end(now, endedError(message.reason, this.#serverError)),
        ];
      case "error": {
        const error = permanentError(message.error);
        if (error) return this.#end(now, error);
        // transient (capacity, internal error...): the close that follows triggers a retry
        this.#serverError = message.error;
        return [emitError(classify(message.error))];
      }
      default:
        return [];
    }
  }

  localOffer(_now: number, sdp: string): Action[] {
    return this.#socket ? this.#handshake.localOffer(sdp) : [];
  }

  localCandidate(_now: number, candidate: IceCandidateInfo | null): Action[] {
    return this.#socket ? this.#handshake.localCandidate(candidate) : [];
  }

  /** The media connection's state: the peer connection's (Gen-A) or the room's (Gen-B:
   * "connected" once joined and published); the handshake says which states mean it is lost. */
  peerState(now: number, state: PeerState): Action[] {
    if (!this.#handshake.started) return [];
    if (state === "connected") {
      this.#attempts.mediaConnected();
      return this.#current === "generating" ? [] : this.#setState("connected");
    }
    const why = this.#handshake.lost(state);
    return why === null ? [] : this.#unreachable(now, why, true);
  }

  onTimer(now: number): Action[] {
    if (this.#handshake.queue !== null) return []; // every deadline pauses while the session waits in line
    const overdue = this.#attempts.connectOverdue(now);
    if (overdue) return this.#end(now, overdue);
    const expired = this.#handshake.expired(now);
    if (expired !== null) return this.#lose(now, expired);
    const failed = this.#attempts.attemptOverdue(now);
    if (failed) return this.#unreachable(now, failed.why, failed.media);
    const actions = this.#phase === "backoff" && this.#attempts.retryDue(now) ? this.#open(now) : [];
    const flight = this.#updates.expired(now);
    if (flight) {
      if (flight.initial) return [...actions, ...this.#lose(now, "no ack for the initial state")];
      actions.push(...this.#updates.timeOut(flight), ...this.#updates.dispatch(now));
    }
    return actions;
  }

  // ---- requests and acks (the update queue) ---------------------------------------------------

  #request(now: number, change: () => Change, enhance: boolean | undefined): RequestResult {
    const requestId = ++this.#lastRequestId;
    let checked: Change;
    try {
      checked = change();
    } catch (error) {
      return { requestId, actions: [fail(requestId, error as DecartError)] };
    }
    // with no session nothing acks it: it only changes what start() sends
    if (this.#phase === "idle") return { requestId, actions: this.#updates.preset(requestId, checked, enhance) };
    return { requestId, actions: [...this.#updates.request(requestId, checked, enhance), ...this.#updates.dispatch(now)] };
  }

  /** After an ack: a settled handshake (accepted or not) ends the handshake; then the queue sends
   * what waits. */
  #settled(now: number, { flight, actions }: Settlement): Action[] {
    const done = flight?.initial ? this.#handshakeDone(now) : [];
    return [...actions, ...done, ...this.#updates.dispatch(now)];
  }

  /** The initial state was answered: requests may go out; the handshake goes on. */
  #handshakeDone(now: number): Action[] {
    this.#phase = "running";
    this.#updates.running = true;
    return this.#handshake.acked(now);
  }

  // ---- what the handshake may ask (HandshakeHost) ----------------------------------------------

  #skipInitialState(now: number): Action[] | null {
    const settled = this.#updates.skipEmptyHandshake();
    return settled && [...settled, ...this.#handshakeDone(now)];
  }

  #newSessionId(sessionId: string): Action[] {
    this.#sessionIdValue = sessionId;
    return [{ kind: "Emit", name: "session_id", value: sessionId }];
  }

  #postpone(seconds: number): void {
    this.#attempts.postpone(seconds);
    this.#updates.postpone(seconds);
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  #open(now: number): Action[] {
    // a new socket is a new server session, whose ticks count from zero again
    this.#secondsBefore += this.#seconds;
    this.#seconds = 0;
    this.#phase = "opening";
    this.#serverError = null;
    this.#socket = true;
    return [{ kind: "OpenSocket", attempt: this.#attempts.open(now) }];
  }

  /** Close socket and media; fold the in-flight update back into the queue. */
  #teardown(now: number): Action[] {
    const actions: Action[] = [];
    if (this.#socket) {
      actions.push({ kind: "CloseSocket", code: CLOSE_NORMAL, reason: "" });
      this.#socket = false;
    }
    actions.push(...this.#handshake.close(now));
    this.#attempts.close();
    this.#updates.foldBack();
    return actions;
  }

  /** The socket did not open in time, or the media failed or did not connect in time: the end
   * of a session that never connected, else a loss. */
  #unreachable(now: number, why: string, media = false): Action[] {
    const error = this.#attempts.unreachable(why, media);
    return error ? this.#end(now, error) : this.#lose(now, why);
  }

  /** An unexpected loss: retry after the next backoff delay, or give up. A session that never
   * connected stays "connecting": nothing was lost. */
  #lose(now: number, why: string): Action[] {
    const actions = this.#teardown(now);
    const live = this.#current === "connected" || this.#current === "generating";
    const error = this.#attempts.retry(now, why, live);
    if (error) return [...actions, ...this.#end(now, error)];
    this.#phase = "backoff";
    return this.#attempts.connected ? [...actions, ...this.#setState("reconnecting")] : actions;
  }

  /** End the session: close everything, settle pending requests, publish the error. */
  #end(now: number, error: DecartError | null): Action[] {
    const actions = this.#teardown(now);
    const pending = this.#updates.takeQueued();
    if (pending) {
      if (error === null) {
        // a clean end: keep the values for the next start()
        this.#updates.base = apply(pending.change, this.#updates.base);
        actions.push(...pending.ids.map((id) => resolve(id, true)));
      } else {
        actions.push(...pending.ids.map((id) => fail(id, error)));
      }
    }
    if (error) actions.push(emitError(error));
    this.#phase = "idle";
    this.#attempts.end();
    return [...actions, ...this.#setState("disconnected")];
  }

  #setState(state: ConnectionState): Action[] {
    if (state === this.#current) return [];
    this.#current = state;
    if (state === "connected" || state === "generating") this.#attempts.reached(state === "generating");
    return [{ kind: "StateChanged", state }];
  }
}
