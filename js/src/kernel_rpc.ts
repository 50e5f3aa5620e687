// Token requests over the widget comm: the front end asks the kernel for a credential before each
// (re)connect (docs/architecture.md, "Custom messages"); the kernel answers with `token` or
// `token_error` carrying the same id. A kernel that does not answer within TOKEN_TIMEOUT_MS
// counts as a lost connection, which the session core retries.
//
// anywidget's `experimental.invoke` / `@command` does the same round trip, but is not used here:
// it arrived within anywidget 0.9.x (pyproject allows any 0.9) and hosts that re-implement
// anywidget's front end may lack `experimental`; a Python command that raises sends no answer at
// all, so the error would still need its own envelope; and bench/ttff.py compares a bundle
// against the previous one, which speaks this protocol.

import type { Clock } from "./core_loop";
import { ConnectionLost, type DecartError, fromKind } from "./errors";
import type { KernelComm } from "./kernel_comm";
import type { KernelMessage } from "./traits";
import type { Credential } from "./transports";

export const TOKEN_TIMEOUT_MS = 15_000;

interface Waiter {
  resolve(credential: Credential): void;
  reject(error: DecartError): void;
  timer: unknown;
}

export class TokenRequests {
  private readonly waiters = new Map<number, Waiter>();
  private lastId = 0;
  private readonly unlisten: () => void;

  constructor(
    private readonly comm: KernelComm,
    private readonly clock: Clock,
  ) {
    this.unlisten = comm.listen((message) => this.answer(message));
  }

  /** Ask the kernel for a credential; rejects with the kernel's typed error or on timeout. */
  request(): Promise<Credential> {
    const id = ++this.lastId;
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.waiters.delete(id);
        reject(new ConnectionLost("The kernel did not answer the token request: is the kernel still running?"));
      }, TOKEN_TIMEOUT_MS);
      this.waiters.set(id, { resolve, reject, timer });
      this.comm.send({ type: "token_request", id });
    });
  }

  /** Forget every pending request (their promises stay pending) and stop listening. */
  dispose(): void {
    for (const waiter of this.waiters.values()) this.clock.clearTimeout(waiter.timer);
    this.waiters.clear();
    this.unlisten();
  }

  private answer(message: KernelMessage): void {
    if (message.type !== "token" && message.type !== "token_error") return;
    const waiter = this.waiters.get(message.id);
    if (!waiter) return;
    this.waiters.delete(message.id);
    this.clock.clearTimeout(waiter.timer);
    if (message.type === "token") {
      const credential: Credential = { apiKey: message.api_key };
      if (message.realtime_url) credential.realtimeUrl = message.realtime_url;
      waiter.resolve(credential);
    } else {
      waiter.reject(fromKind(message.kind ?? "error", message.message || "The kernel could not mint a token."));
    }
  }
}
