// Runs the sans-I/O session core with real timers: one input at a time, each action handed to
// the composition root (controller.ts), and the core's next deadline kept as one timer.

import { debug } from "./log";
import type { Action, Session } from "./session";

/** Monotonic time in seconds, and timers (the browser's, or a test's fake clock). */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** One input to the core: a call of one of its methods at `now`. */
export type Input = (session: Session, now: number) => Action[];

export class CoreLoop {
  private readonly inputs: Input[] = [];
  private feeding = false;
  private timer: unknown = null;
  private stopped = false;

  constructor(
    readonly session: Session,
    private readonly clock: Clock,
    /** carries out one action; a throw is logged and the next action still runs */
    private readonly execute: (action: Action) => void,
    /** after a batch of inputs (the root saves the traitlets it changed) */
    private readonly settled: () => void,
  ) {}

  /** Run one input through the core and carry out its actions (inputs raised meanwhile queue up). */
  feed(input: Input): void {
    this.inputs.push(input);
    if (this.feeding) return;
    this.feeding = true;
    try {
      while (this.inputs.length) {
        const next = this.inputs.shift()!;
        for (const action of next(this.session, this.clock.now())) {
          try {
            this.execute(action);
          } catch (error) {
            debug("action failed", action.kind, error);
          }
        }
      }
    } finally {
      this.feeding = false;
    }
    this.schedule();
    this.settled();
  }

  /** No timer any more (the widget is gone); inputs still run. */
  dispose(): void {
    this.stopped = true;
    this.clearTimer();
  }

  private schedule(): void {
    this.clearTimer();
    const deadline = this.session.nextDeadline();
    if (deadline === null || this.stopped) return;
    const delayMs = Math.max(0, (deadline - this.clock.now()) * 1000);
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.feed((s, now) => s.onTimer(now));
    }, delayMs);
  }

  private clearTimer(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }
}
