// How long connecting may take, and when a lost session tries again (docs/protocol.md, "States,
// timeouts and retries"): the twin of decart_widget/protocol/_attempts.py. Deadlines only, no
// timers, like the session core (session.ts) that owns it.
// * The whole (re)connect, from a start or a loss to "connected", is bounded by `connect`.
// * Each attempt is bounded (docs/where-it-works.md): its socket must open within `open` and its
//   media connect within `media` of being started, both well under `connect`.
// * After a loss the next attempt waits the next `backoff` delay; their number is the number of
//   retries, counted again from zero once the session is generating.
// A session that never connected does not retry a failed attempt (the next one would meet the same
// network) and never calls its failure a lost connection.

import { ConnectionLost } from "./errors";

/** Seconds: the whole connect, an attempt's socket and media, the delays before each retry. */
export interface AttemptLimits {
  connect: number;
  open: number;
  media: number;
  backoff: readonly number[];
}

export class Attempts {
  readonly #limits: AttemptLimits;
  /** reconnect attempts used since the session last reached generating */
  retries = 0;
  /** the media connected at least once since start() */
  connected = false;
  #connectDeadline: number | null = null;
  #retryAt: number | null = null;
  // this attempt's deadline: for the socket to open, then for the media to connect once started
  #attemptDeadline: number | null = null;
  #awaitingMedia = false;

  constructor(limits: AttemptLimits) {
    this.#limits = limits;
  }

  nextDeadline(): number | null {
    const deadlines = [this.#connectDeadline, this.#retryAt, this.#attemptDeadline].filter((d): d is number => d !== null);
    return deadlines.length ? Math.min(...deadlines) : null;
  }

  /** A new session: the whole connect is bounded from now. */
  start(now: number): void {
    this.retries = 0;
    this.connected = false;
    this.#connectDeadline = now + this.#limits.connect;
  }

  /** A new attempt, whose socket must open in time; its number (0 first, k for the k-th retry). */
  open(now: number): number {
    this.#retryAt = null;
    this.#attemptDeadline = now + this.#limits.open;
    this.#awaitingMedia = false;
    return this.retries;
  }

  socketOpened(): void {
    this.#attemptDeadline = null;
  }

  /** The media link was started: it must connect in time. */
  awaitMedia(now: number): void {
    this.#attemptDeadline = now + this.#limits.media;
    this.#awaitingMedia = true;
  }

  mediaConnected(): void {
    this.#attemptDeadline = null;
    this.connected = true;
  }

  /** The session is connected (or generating: the retry count starts again). */
  reached(generating: boolean): void {
    this.#connectDeadline = null;
    this.connected = true;
    if (generating) this.retries = 0;
  }

  /** Seconds that did not count (the session waited in the server's queue). */
  postpone(seconds: number): void {
    if (this.#connectDeadline !== null) this.#connectDeadline += seconds;
  }

  /** The attempt's socket and media are closed. */
  close(): void {
    this.#attemptDeadline = null;
  }

  /** The session ended: nothing more to wait for. */
  end(): void {
    this.#retryAt = null;
    this.#connectDeadline = null;
  }

  /** The error that ends the session once the whole connect took too long, else null. */
  connectOverdue(now: number): ConnectionLost | null {
    if (this.#connectDeadline === null || now < this.#connectDeadline) return null;
    return new ConnectionLost(`could not connect within ${this.#limits.connect} s`);
  }

  /** Why the attempt failed if its socket or its media did not come up in time, else null. */
  attemptOverdue(now: number): { why: string; media: boolean } | null {
    if (this.#attemptDeadline === null || now < this.#attemptDeadline) return null;
    const media = this.#awaitingMedia;
    const why = media ? `no media connection within ${this.#limits.media} s` : `no signaling connection within ${this.#limits.open} s`;
    return { why, media };
  }

  retryDue(now: number): boolean {
    return this.#retryAt !== null && now >= this.#retryAt;
  }

  /** An attempt failed (`why`; `media`: the media, not the socket): before the session ever
   * connected a retry would meet the same network, so this is the error that ends it; after, null:
   * a loss like any other. */
  unreachable(why: string, media: boolean): ConnectionLost | null {
    return this.connected ? null : new ConnectionLost(`${media ? "the video " : ""}could not connect: ${why}`);
  }

  /** After a loss (`why`): the next attempt is scheduled (null), or, with no retry left, the error
   * that ends the session. `live`: the session was connected, so a new connect bound starts. */
  retry(now: number, why: string, live: boolean): ConnectionLost | null {
    if (this.retries >= this.#limits.backoff.length) {
      const text = this.connected
        ? `connection lost after ${this.retries} retries: ${why}`
        : `could not connect after ${this.retries + 1} attempts: ${why}`;
      return new ConnectionLost(text);
    }
    this.#retryAt = now + this.#limits.backoff[this.retries]!;
    this.retries += 1;
    if (live) this.#connectDeadline = now + this.#limits.connect;
    return null;
  }
}
