// The sans-I/O session core (docs/architecture.md "The session core"), the TypeScript twin of
// decart_widget/protocol/_session.py: same states, requests, timeouts, retries and errors.
// It never touches a socket, a timer or a clock: every input carries `now` (monotonic seconds)
// and returns the actions for the adapter to carry out, in order. Timers are deadlines: the
// adapter asks nextDeadline() and calls onTimer(now) once it has passed.
// The media transport is chosen at construction: "webrtc" (Gen-A: SDP offer/answer over the
// socket, StartPeer once the initial state is acked) or "livekit" (Gen-B: livekit_join, the
// initial state as its own frame, JoinRoom on livekit_room_info; docs/protocol.md). The control
// half (requests, acks, ticks, errors, retries, replay) is the same for both.
// Each attempt is bounded (docs/where-it-works.md): the socket must open within
// signalingOpenTimeout and the media connect within mediaConnectTimeout of being started, well
// under connectTimeout. A session that never connected does not retry these (the next attempt
// meets the same network) and never calls its failure a lost connection: it stays "connecting"
// between attempts.

import {
  BACKOFF,
  CLOSE_NORMAL,
  CLOSE_PROXY_CONCURRENCY,
  CLOSE_TRY_AGAIN_LATER,
  CONNECT_TIMEOUT,
  IMAGE_ACK_TIMEOUT,
  INITIAL_ACK_TIMEOUT,
  MEDIA_TRANSPORTS,
  PROMPT_ACK_TIMEOUT,
  ROOM_INFO_TIMEOUT,
  SIGNALING_OPEN_TIMEOUT,
  MEDIA_CONNECT_TIMEOUT,
  type MediaTransportName,
} from "./constants";
import { type Action, type ConnectionState, type PeerState, type QueueStatus, emitError, fail, resolve } from "./actions";
import {
  ConcurrencyLimit,
  ConnectionLost,
  DecartError,
  InsufficientCredits,
  InvalidInput,
  ModerationError,
  SessionEnded,
  classify,
  isPermanent,
} from "./errors";
import * as msg from "./messages";
import type { IceCandidateInfo, LivekitRoomInfoMessage, ServerMessage } from "./messages";
import { apply, cleanImage, cleanPrompt, type Change, type Settings } from "./requests";
import { type Settlement, UpdateQueue } from "./update_queue";

export type { Action, ConnectionState, EmitAction, PeerState, QueueStatus } from "./actions";

export {
  BACKOFF,
  CLOSE_PROXY_CONCURRENCY,
  CLOSE_TRY_AGAIN_LATER,
  CONNECT_TIMEOUT,
  IMAGE_ACK_TIMEOUT,
  INITIAL_ACK_TIMEOUT,
  PROMPT_ACK_TIMEOUT,
  ROOM_INFO_TIMEOUT,
  SIGNALING_OPEN_TIMEOUT,
  MEDIA_CONNECT_TIMEOUT,
  type MediaTransportName,
} from "./constants";

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
  | "running" // initial state acked (Gen-A: peer started)
  | "backoff"; // waiting to retry

export class Session {
  private readonly updates: UpdateQueue;
  private current: ConnectionState = "disconnected";
  private phase: Phase = "idle";
  private lastRequestId = 0;
  private retries = 0;
  private retryAt: number | null = null;
  private connectDeadline: number | null = null;
  // this attempt's deadline: for the socket to open, then for the media to connect once started
  private attemptDeadline: number | null = null;
  private awaitingMedia = false;
  private mediaConnected = false; // the media connected at least once since start()
  private serverError: string | null = null; // this attempt's last transient server error text
  private socket = false; // a socket is open or opening
  private peer = false; // a peer connection exists
  private answered = false;
  private earlyCandidates: (IceCandidateInfo | null)[] = [];
  private secondsBefore = 0; // generation seconds of the server sessions before this one
  private seconds = 0; // the current server session's generation seconds
  private sessionIdValue: string | null = null;
  // Gen-B: the room info deadline, and the time the session entered the server's queue (every
  // deadline pauses while it waits there) with its last place in line.
  private roomInfoDeadline: number | null = null;
  private queuedSince: number | null = null;
  private line: QueueStatus | null = null;
  private readonly transportName: MediaTransportName;
  private readonly roomInfoTimeout: number;
  private readonly initialAckTimeout: number;
  private readonly connectTimeout: number;
  private readonly openTimeout: number;
  private readonly mediaTimeout: number;
  private readonly backoff: readonly number[];

  constructor(options: SessionOptions = {}) {
    const transport = options.transport ?? "webrtc";
    if (!MEDIA_TRANSPORTS.includes(transport)) {
      throw new InvalidInput(`media transport must be ${MEDIA_TRANSPORTS.map((t) => `"${t}"`).join(" or ")}, got ${String(transport)}`);
    }
    this.transportName = transport;
    this.roomInfoTimeout = options.roomInfoTimeout ?? ROOM_INFO_TIMEOUT;
    const base = { prompt: cleanPrompt(options.prompt ?? null), image: cleanImage(options.image ?? null) };
    this.updates = new UpdateQueue(base, options.enhance ?? true, {
      promptAck: options.promptAckTimeout ?? PROMPT_ACK_TIMEOUT,
      imageAck: options.imageAckTimeout ?? IMAGE_ACK_TIMEOUT,
    });
    this.initialAckTimeout = options.initialAckTimeout ?? INITIAL_ACK_TIMEOUT;
    this.connectTimeout = options.connectTimeout ?? CONNECT_TIMEOUT;
    this.openTimeout = options.signalingOpenTimeout ?? SIGNALING_OPEN_TIMEOUT;
    this.mediaTimeout = options.mediaConnectTimeout ?? MEDIA_CONNECT_TIMEOUT;
    this.backoff = options.backoff ?? BACKOFF;
  }

  // ---- properties ----------------------------------------------------------------------------

  get state(): ConnectionState {
    return this.current;
  }

  /** The state the user asked for (what a reconnect replays). */
  get desired(): Readonly<MediaState> {
    return { ...this.updates.desired, enhance: this.updates.enhance };
  }

  /** The last state the server acknowledged. */
  get accepted(): Readonly<MediaState> {
    return { ...this.updates.accepted, enhance: this.updates.enhance };
  }

  /** Seconds generated since start(), summed over every server session (reconnects). */
  get generationSeconds(): number {
    return this.secondsBefore + this.seconds;
  }

  get sessionId(): string | null {
    return this.sessionIdValue;
  }

  /** The media transport: "webrtc" (Gen-A) or "livekit" (Gen-B). */
  get transport(): MediaTransportName {
    return this.transportName;
  }

  /** Gen-B: the place in the server's queue, null when not queued. */
  get queue(): Readonly<QueueStatus> | null {
    return this.line;
  }

  /** Reconnect attempts used since the session last reached `generating`. */
  get retriesUsed(): number {
    return this.retries;
  }

  /** The earliest time onTimer must be called, or null (always while queued). */
  nextDeadline(): number | null {
    if (this.queuedSince !== null) return null;
    const deadlines = [
      this.connectDeadline,
      this.phase === "backoff" ? this.retryAt : null,
      this.updates.nextDeadline(),
      this.roomInfoDeadline,
      this.attemptDeadline,
    ].filter((d): d is number => d !== null);
    return deadlines.length ? Math.min(...deadlines) : null;
  }

  // ---- user inputs ---------------------------------------------------------------------------

  start(now: number): Action[] {
    if (this.phase !== "idle") return [];
    this.retries = 0;
    this.updates.restart();
    this.secondsBefore = this.seconds = 0;
    this.sessionIdValue = null;
    this.mediaConnected = false;
    this.connectDeadline = now + this.connectTimeout;
    return [...this.setState("connecting"), ...this.open(now)];
  }

  stop(now: number): Action[] {
    return this.phase === "idle" ? [] : this.end(now, null);
  }

  /** Set the prompt (null clears it; blank is InvalidInput); `enhance` undefined keeps the flag. */
  setPrompt(now: number, text: string | null, enhance?: boolean): RequestResult {
    const requestId = ++this.lastRequestId;
    let change: Change;
    try {
      if (text !== null && typeof text === "string" && !text.trim()) {
        throw new InvalidInput("prompt is empty (use null to clear it)");
      }
      change = { prompt: cleanPrompt(text) };
    } catch (error) {
      return { requestId, actions: [fail(requestId, error as DecartError)] };
    }
    return { requestId, actions: this.request(now, requestId, change, enhance) };
  }

  /** Set (raw base64) or clear (null) the image; `prompt` undefined or null keeps the prompt,
   * a blank one clears it. */
  setImage(now: number, image: string | null, prompt?: string | null, enhance?: boolean): RequestResult {
    const requestId = ++this.lastRequestId;
    let change: Change;
    try {
      change = { image: cleanImage(image) };
      if (prompt !== undefined && prompt !== null) change.prompt = cleanPrompt(prompt);
    } catch (error) {
      return { requestId, actions: [fail(requestId, error as DecartError)] };
    }
    return { requestId, actions: this.request(now, requestId, change, enhance) };
  }

  // ---- transport inputs ----------------------------------------------------------------------

  socketOpened(now: number): Action[] {
    if (this.phase !== "opening") return [];
    this.phase = "handshake";
    this.attemptDeadline = null;
    if (this.transportName === "livekit") return this.join(now);
    return [this.updates.handshake(now, this.initialAckTimeout)];
  }

  /** Gen-B: ask for a room, then send the initial state as its own frame; its ack is awaited as
   * in Gen-A but the room does not wait for it. No prompt and no image: a passthrough join, and
   * nothing to ack. */
  private join(now: number): Action[] {
    this.roomInfoDeadline = now + this.roomInfoTimeout;
    const settled = this.updates.skipEmptyHandshake();
    if (settled) return [{ kind: "Send", message: msg.livekitJoin(true) }, ...settled, ...this.handshakeDone(now)];
    return [{ kind: "Send", message: msg.livekitJoin(false) }, this.updates.handshake(now, this.initialAckTimeout)];
  }

  socketClosed(now: number, code: number | null, reason = ""): Action[] {
    if (this.phase === "idle" || this.phase === "backoff" || !this.socket) return [];
    this.socket = false;
    if (code === CLOSE_TRY_AGAIN_LATER || code === CLOSE_PROXY_CONCURRENCY) {
      return this.end(now, new ConcurrencyLimit(reason || "Concurrent session limit reached."));
    }
    const error = reason ? permanentError(reason) : null;
    if (error) return this.end(now, error);
    const why = code === null ? reason || "could not connect" : `socket closed (code ${code}${reason ? `: ${reason}` : ""})`;
    return this.lose(now, why);
  }

  message(now: number, message: ServerMessage): Action[] {
    if (this.phase !== "handshake" && this.phase !== "running") return [];
    if (this.transportName === "livekit") {
      switch (message.type) {
        case "livekit_room_info":
          return this.onRoomInfo(now, message);
        case "queue_position":
          return this.onQueuePosition(now, message.position, message.queue_size);
        case "answer":
        case "ice-candidate":
        case "ice-restart":
        case "session_id":
          return []; // Gen-A's media messages mean nothing to a LiveKit session
      }
    }
    switch (message.type) {
      case "prompt_ack":
        return this.settled(now, this.updates.promptAck(message));
      case "set_image_ack":
        return this.settled(now, this.updates.imageAck(message));
      case "answer":
        return this.onAnswer(message.sdp);
      case "ice-candidate":
        if (!this.answered) {
          // a peer connection cannot take candidates before the answer
          this.earlyCandidates.push(message.candidate);
          return [];
        }
        return [{ kind: "AddRemoteCandidate", candidate: message.candidate }];
      case "session_id":
        this.sessionIdValue = message.session_id;
        return [{ kind: "Emit", name: "session_id", value: message.session_id }];
      case "generation_started":
        return this.setState("generating");
      case "generation_tick":
        this.seconds = Math.trunc(message.seconds);
        return [...this.setState("generating"), { kind: "Emit", name: "generation_tick", value: this.generationSeconds }];
      case "generation_ended":
        return this.onGenerationEnded(now, message.seconds, message.reason);
      case "error": {
        const error = permanentError(message.error);
        if (error) return this.end(now, error);
        // transient (capacity, internal error...): the close that follows triggers a retry
        this.serverError = message.error;
        return [emitError(classify(message.error))];
      }
      case "ice-restart":
        if (!this.peer) return [];
        this.answered = false;
        return [{ kind: "RestartIce", turnConfig: message.turn_config }];
      default:
        return [];
    }
  }

  localOffer(_now: number, sdp: string): Action[] {
    return this.webrtcPeer() ? [{ kind: "Send", message: msg.offer(sdp) }] : [];
  }

  localCandidate(_now: number, candidate: IceCandidateInfo | null): Action[] {
    return this.webrtcPeer() ? [{ kind: "Send", message: msg.iceCandidate(candidate) }] : [];
  }

  private webrtcPeer(): boolean {
    return this.transportName === "webrtc" && this.peer && this.socket;
  }

  /** The media connection's state: the peer connection's (Gen-A) or the room's (Gen-B:
   * "connected" once joined and published; "disconnected" is final, as a LiveKit client reports
   * it only after its own reconnect attempts failed). */
  peerState(now: number, state: PeerState): Action[] {
    if (!this.peer) return [];
    if (state === "connected") {
      this.attemptDeadline = null;
      this.mediaConnected = true;
      return this.current === "generating" ? [] : this.setState("connected");
    }
    const room = this.transportName === "livekit";
    if (state === "failed" || state === "closed" || (room && state === "disconnected")) {
      return this.unreachable(now, `${room ? "room" : "peer connection"} ${state}`, true);
    }
    return []; // "new", "connecting", and Gen-A's "disconnected", which ICE often recovers from
  }

  onTimer(now: number): Action[] {
    if (this.queuedSince !== null) return []; // every deadline pauses while the session waits in line
    if (this.connectDeadline !== null && now >= this.connectDeadline) {
      return this.end(now, new ConnectionLost(`could not connect within ${this.connectTimeout} s`));
    }
    if (this.roomInfoDeadline !== null && now >= this.roomInfoDeadline) {
      return this.lose(now, `no room info within ${this.roomInfoTimeout} s`);
    }
    if (this.attemptDeadline !== null && now >= this.attemptDeadline) {
      const media = this.awaitingMedia;
      const why = media ? `no media connection within ${this.mediaTimeout} s` : `no signaling connection within ${this.openTimeout} s`;
      return this.unreachable(now, why, media);
    }
    const actions: Action[] = [];
    if (this.phase === "backoff" && this.retryAt !== null && now >= this.retryAt) actions.push(...this.open(now));
    const flight = this.updates.expired(now);
    if (flight) {
      if (flight.initial) return [...actions, ...this.lose(now, "no ack for the initial state")];
      actions.push(...this.updates.timeOut(flight), ...this.updates.dispatch(now));
    }
    return actions;
  }

  // ---- requests and acks (the update queue) ---------------------------------------------------

  private request(now: number, requestId: number, change: Change, enhance: boolean | undefined): Action[] {
    // with no session nothing acks it: it only changes what start() sends
    if (this.phase === "idle") return this.updates.preset(requestId, change, enhance);
    return [...this.updates.request(requestId, change, enhance), ...this.updates.dispatch(now)];
  }

  /** After an ack: a settled handshake (accepted or not) ends the handshake; then the queue sends
   * what waits. */
  private settled(now: number, { flight, actions }: Settlement): Action[] {
    const done = flight?.initial ? this.handshakeDone(now) : [];
    return [...actions, ...done, ...this.updates.dispatch(now)];
  }

  /** The initial state was answered: requests may go out; Gen-A starts its peer now (Gen-B joins
   * its room whenever the room info comes). */
  private handshakeDone(now: number): Action[] {
    this.phase = "running";
    this.updates.running = true;
    if (this.transportName === "livekit") return [];
    this.peer = true;
    this.awaitMedia(now);
    return [{ kind: "StartPeer" }];
  }

  // ---- Gen-B: queue and room ------------------------------------------------------------------

  private onQueuePosition(now: number, position: number, size: number | null): Action[] {
    if (this.peer) return []; // a queue_position after the room info
    if (this.queuedSince === null) this.queuedSince = now;
    this.line = { position, size };
    return [{ kind: "Emit", name: "queue", value: { position, size } }];
  }

  /** Out of the server's queue: the paused deadlines resume where they stopped. */
  private leaveLine(now: number): Action[] {
    if (this.queuedSince !== null) {
      const paused = now - this.queuedSince;
      this.queuedSince = null;
      if (this.connectDeadline !== null) this.connectDeadline += paused;
      if (this.roomInfoDeadline !== null) this.roomInfoDeadline += paused;
      this.updates.postpone(paused);
    }
    if (this.line === null) return [];
    this.line = null;
    return [{ kind: "Emit", name: "queue", value: null }];
  }

  private onRoomInfo(now: number, info: LivekitRoomInfoMessage): Action[] {
    if (this.peer) return []; // a second room info
    const actions = this.leaveLine(now);
    this.roomInfoDeadline = null;
    this.peer = true;
    this.awaitMedia(now);
    actions.push({ kind: "JoinRoom", url: info.livekit_url, token: info.token, roomName: info.room_name, sessionId: info.session_id });
    if (info.session_id !== null) {
      this.sessionIdValue = info.session_id;
      actions.push({ kind: "Emit", name: "session_id", value: info.session_id });
    }
    return actions;
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  private onAnswer(sdp: string): Action[] {
    if (!this.peer || this.answered) return [];
    this.answered = true;
    const early = this.earlyCandidates;
    this.earlyCandidates = [];
    return [
      { kind: "ApplyAnswer", sdp },
      ...early.map((candidate): Action => ({ kind: "AddRemoteCandidate", candidate })),
    ];
  }

  private onGenerationEnded(now: number, seconds: number, reason: string): Action[] {
    this.seconds = Math.max(this.seconds, Math.trunc(seconds));
    let error: DecartError | null;
    if (reason === "disconnect") error = null;
    else if (reason === "insufficient_credits") error = new InsufficientCredits("insufficient credits: the generation was stopped");
    else if (reason === "moderation_violation") error = new ModerationError("the generation was stopped by moderation");
    else if (reason === "timeout") error = new SessionEnded("the session reached its time limit", "timeout");
    // the server said why before it ended: say it too
    else if (this.serverError) error = new SessionEnded(`the server ended the generation: ${this.serverError}`, reason);
    else error = new SessionEnded(`the server ended the generation (${reason})`, reason);
    return [
      { kind: "Emit", name: "generation_tick", value: this.generationSeconds },
      { kind: "Emit", name: "generation_ended", value: reason },
      ...this.end(now, error),
    ];
  }

  private open(now: number): Action[] {
    // a new socket is a new server session, whose ticks count from zero again
    this.secondsBefore += this.seconds;
    this.seconds = 0;
    this.phase = "opening";
    this.retryAt = null;
    this.serverError = null;
    this.attemptDeadline = now + this.openTimeout;
    this.awaitingMedia = false;
    this.socket = true;
    return [{ kind: "OpenSocket", attempt: this.retries }];
  }

  /** Close socket and peer; fold the in-flight update back into the queue. */
  private teardown(now: number): Action[] {
    const actions: Action[] = [];
    if (this.socket) {
      actions.push({ kind: "CloseSocket", code: CLOSE_NORMAL, reason: "" });
      this.socket = false;
    }
    if (this.peer) {
      actions.push({ kind: "ClosePeer" });
      this.peer = false;
    }
    this.answered = false;
    this.earlyCandidates = [];
    this.roomInfoDeadline = null;
    this.attemptDeadline = null;
    actions.push(...this.leaveLine(now));
    this.updates.foldBack();
    return actions;
  }

  private awaitMedia(now: number): void {
    this.attemptDeadline = now + this.mediaTimeout;
    this.awaitingMedia = true;
  }

  /** The socket did not open in time, or the media failed or did not connect in time. Before the
   * session ever connected, a retry would meet the same network: end at once, saying so; after,
   * it is a loss like any other. */
  private unreachable(now: number, why: string, media = false): Action[] {
    if (this.mediaConnected) return this.lose(now, why);
    return this.end(now, new ConnectionLost(`${media ? "the video " : ""}could not connect: ${why}`));
  }

  /** An unexpected loss: retry after the next backoff delay, or give up. A session that never
   * connected stays "connecting": nothing was lost. */
  private lose(now: number, why: string): Action[] {
    const actions = this.teardown(now);
    if (this.retries >= this.backoff.length) {
      const text = this.mediaConnected
        ? `connection lost after ${this.retries} retries: ${why}`
        : `could not connect after ${this.retries + 1} attempts: ${why}`;
      return [...actions, ...this.end(now, new ConnectionLost(text))];
    }
    const delay = this.backoff[this.retries]!;
    this.retries += 1;
    this.retryAt = now + delay;
    this.phase = "backoff";
    if (this.current === "connected" || this.current === "generating") this.connectDeadline = now + this.connectTimeout;
    if (!this.mediaConnected) return actions;
    return [...actions, ...this.setState("reconnecting")];
  }

  /** End the session: close everything, settle pending requests, publish the error. */
  private end(now: number, error: DecartError | null): Action[] {
    const actions = this.teardown(now);
    const pending = this.updates.takeQueued();
    if (pending) {
      if (error === null) {
        // a clean end: keep the values for the next start()
        this.updates.base = apply(pending.change, this.updates.base);
        actions.push(...pending.ids.map((id) => resolve(id, true)));
      } else {
        actions.push(...pending.ids.map((id) => fail(id, error)));
      }
    }
    if (error) actions.push(emitError(error));
    this.phase = "idle";
    this.retryAt = null;
    this.connectDeadline = null;
    return [...actions, ...this.setState("disconnected")];
  }

  private setState(state: ConnectionState): Action[] {
    if (state === this.current) return [];
    this.current = state;
    if (state === "connected" || state === "generating") {
      this.connectDeadline = null;
      this.mediaConnected = true;
    }
    if (state === "generating") this.retries = 0;
    return [{ kind: "StateChanged", state }];
  }
}

/** The typed error of a server text if retrying cannot help, else null. */
function permanentError(text: string): DecartError | null {
  const error = classify(text);
  return error.permanent || isPermanent(text) ? error : null;
}
