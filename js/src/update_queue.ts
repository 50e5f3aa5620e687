// The update pipeline, free of I/O: prompt and image requests -> frames -> acks -> settlements.
// The twin of decart_widget/protocol/_update_queue.py (docs/architecture.md "The update queue"):
// the desired state is the base (accepted) state with the in-flight update applied, then the
// queued one; one update in flight; a newer request merges into the queued one (latest wins);
// prompt_ack matches the in-flight prompt by its text, set_image_ack the oldest set_image sent;
// a failed or timed-out update reverts by being dropped; on a loss the in-flight update folds
// back into the queue, to be replayed. The owner (session.ts) decides when updates may go out
// (`running`) and what a settled handshake means.

import { type Action, emitError, fail, resolve } from "./actions";
import { AckTimeout, DecartError, ModerationError, classify } from "./errors";
import type { PromptAckMessage, SetImageAckMessage } from "./messages";
import { EMPTY, InFlight, Update, apply, followedBy, messageFor, sameSettings, type Change, type Settings } from "./requests";

export interface Timeouts {
  promptAck: number;
  imageAck: number;
}

/** An ack's outcome: the update it settled (if it was in flight) and the actions. */
export interface Settlement {
  flight: InFlight | null;
  actions: Action[];
}

export class UpdateQueue {
  /** the last state the server acknowledged */
  accepted: Settings = EMPTY;
  /** updates may be sent (the owner's handshake is done) */
  running = false;
  #queued: Update | null = null;
  #inFlight: InFlight | null = null;
  /** sent set_images, oldest first: a timed-out one still matches its late ack */
  #imageFifo: InFlight[] = [];
  #acked = false; // an initial state was accepted since restart()
  readonly #timeouts: Timeouts;

  constructor(
    /** the state the next update builds on: the accepted one (or what a start sends) */
    public base: Settings,
    public enhance: boolean,
    timeouts: Timeouts,
  ) {
    this.#timeouts = timeouts;
  }

  get desired(): Settings {
    let settings = this.base;
    for (const update of [this.#inFlight?.update, this.#queued]) {
      if (update) settings = apply(update.change, settings);
    }
    return settings;
  }

  nextDeadline(): number | null {
    return this.#inFlight?.deadline ?? null;
  }

  /** The in-flight update if its ack is overdue. */
  expired(now: number): InFlight | null {
    const flight = this.#inFlight;
    return flight && now >= flight.deadline ? flight : null;
  }

  /** The in-flight update's ack may come `seconds` later (Gen-B: the session waited in line). */
  postpone(seconds: number): void {
    if (this.#inFlight) this.#inFlight.deadline += seconds;
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  /** A new session (start): nothing accepted since. */
  restart(): void {
    this.#acked = false;
  }

  /** The connection is gone: the in-flight update merges back into the queued one. */
  foldBack(): void {
    this.running = false;
    this.#imageFifo = [];
    const flight = this.#inFlight;
    this.#inFlight = null;
    if (flight) {
      const queued = this.#queued ?? new Update();
      this.#queued = new Update(followedBy(flight.update.change, queued.change), [...flight.update.requests, ...queued.requests]);
    }
  }

  takeQueued(): Update | null {
    const queued = this.#queued;
    this.#queued = null;
    return queued;
  }

  // ---- requests ------------------------------------------------------------------------------

  /** A request with no session: it only changes what the next start sends. */
  preset(requestId: number, change: Change, enhance: boolean | undefined): Action[] {
    if (enhance !== undefined) this.enhance = enhance;
    this.base = apply(change, this.base);
    return [resolve(requestId)];
  }

  /** Queue a request (latest wins); the owner dispatches. */
  request(requestId: number, change: Change, enhance: boolean | undefined): Action[] {
    if (enhance !== undefined) this.enhance = enhance;
    const update = new Update(change, [[requestId, change]]);
    if (!this.#queued) {
      this.#queued = update;
      return [];
    }
    return this.#queued.absorb(update).map((id) => resolve(id, true));
  }

  /** Send the queued update if updates may go out and nothing is in flight. */
  dispatch(now: number): Action[] {
    if (!this.running || this.#inFlight || !this.#queued) return [];
    const update = this.#queued;
    this.#queued = null;
    const message = messageFor(apply(update.change, this.base), update.change, this.enhance, false);
    const timeout = message.type === "prompt" ? this.#timeouts.promptAck : this.#timeouts.imageAck;
    return [this.#send(new InFlight(message, update, now + timeout, false))];
  }

  /** The initial state of a new server session: the whole desired state, in flight. */
  handshake(now: number, timeout: number): Action {
    const update = this.takeQueued() ?? new Update();
    const message = messageFor(apply(update.change, this.base), update.change, this.enhance, true);
    return this.#send(new InFlight(message, update, now + timeout, true));
  }

  /** Gen-B's passthrough join: when the whole desired state is empty, a fresh server session has
   * it already, so nothing is sent or acked. Returns the settlements of the requests that rode on
   * it, or null when there is a state to send (handshake). */
  skipEmptyHandshake(): Action[] | null {
    const update = this.#queued ?? new Update();
    if (!sameSettings(apply(update.change, this.base), EMPTY)) return null;
    this.#queued = null;
    this.accepted = this.base = EMPTY;
    this.#acked = true;
    return update.ids.map((id) => resolve(id));
  }

  #send(flight: InFlight): Action {
    this.#inFlight = flight;
    if (flight.message.type === "set_image") this.#imageFifo.push(flight);
    return { kind: "Send", message: flight.message };
  }

  // ---- acks ----------------------------------------------------------------------------------

  promptAck(ack: PromptAckMessage): Settlement {
    const flight = this.#inFlight;
    if (flight && flight.message.type === "prompt" && flight.message.prompt === ack.prompt) {
      return { flight, actions: this.#settle(flight, ack.success, ack.error) };
    }
    // unknown text (a late or foreign ack): the server still applied it
    if (ack.success) this.#accept({ ...this.accepted, prompt: ack.prompt });
    return { flight: null, actions: [] };
  }

  imageAck(ack: SetImageAckMessage): Settlement {
    const flight = this.#imageFifo.shift();
    if (!flight) return { flight: null, actions: [] };
    if (flight === this.#inFlight) return { flight, actions: this.#settle(flight, ack.success, ack.error) };
    // the late ack of a timed-out set_image
    if (ack.success) this.#accept(flight.settingsAfter(this.accepted));
    return { flight: null, actions: [] };
  }

  /** The in-flight update's ack did not come: fail it and drop its change. */
  timeOut(flight: InFlight): Action[] {
    this.#inFlight = null; // a set_image stays in the FIFO, so its late ack still matches it
    const what = flight.message.type === "prompt" ? "prompt" : "image";
    const timeout = what === "prompt" ? this.#timeouts.promptAck : this.#timeouts.imageAck;
    const error = new AckTimeout(`no ${what} ack within ${timeout} s`);
    return flight.update.ids.map((id) => fail(id, error));
  }

  #accept(settings: Settings): void {
    this.accepted = settings;
    if (this.running) this.base = settings;
  }

  #settle(flight: InFlight, success: boolean, errorText: string | null): Action[] {
    if (this.#inFlight === flight) this.#inFlight = null;
    if (success) {
      this.accepted = this.base = flight.settingsAfter(this.accepted);
      if (flight.initial) this.#acked = true;
      return flight.update.ids.map((id) => resolve(id));
    }
    const error = ackError(errorText);
    const actions = flight.update.ids.map((id) => fail(id, error));
    if (!actions.length) actions.push(emitError(error)); // nobody waits for it (initial state, a replay)
    if (flight.initial) {
      // The model keeps its previous state, which for a fresh server session is none. The
      // handshake goes on; after a reconnect the last accepted state is sent again.
      const previous = this.#acked ? this.accepted : EMPTY;
      this.accepted = EMPTY;
      if (!sameSettings(previous, this.accepted)) {
        const again = new Update(previous.image === null ? { prompt: previous.prompt } : { ...previous });
        if (this.#queued) again.absorb(this.#queued);
        this.#queued = again;
      }
    }
    this.base = this.accepted; // the desired state reverts to the accepted one
    return actions;
  }
}

/** The typed error of a failed ack: its classified text, else ModerationError. */
export function ackError(text: string | null): DecartError {
  if (!text) return new ModerationError("rejected by the server");
  const error = classify(text);
  return error.constructor === DecartError ? new ModerationError(text) : error;
}
