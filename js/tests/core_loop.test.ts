import { describe, expect, it } from "vitest";
import { CoreLoop } from "../src/core_loop";
import { Session, type Action } from "../src/session";
import { clockOf, FakeClock } from "./fakes";

function setup() {
  const clock = new FakeClock();
  const executed: Action[] = [];
  let settled = 0;
  const loop: CoreLoop = new CoreLoop(
    new Session({ prompt: "Anime" }),
    clockOf(clock),
    (action) => {
      executed.push(action);
      // an action that raises an input while the loop runs: it queues up behind the current one
      if (action.kind === "OpenSocket") loop.feed((s, now) => s.socketOpened(now));
    },
    () => settled++,
  );
  return { clock, loop, executed, settled: () => settled };
}

describe("CoreLoop", () => {
  it("runs inputs one at a time, in order, and settles once per batch", () => {
    const w = setup();
    w.loop.feed((s, now) => s.start(now));
    const kinds = w.executed.map((a) => a.kind);
    // start -> OpenSocket; the queued socketOpened -> the handshake's Send, after start's actions
    expect(kinds.indexOf("OpenSocket")).toBeLessThan(kinds.indexOf("Send"));
    expect(w.executed.find((a) => a.kind === "Send")).toMatchObject({ message: { type: "prompt", prompt: "Anime" } });
    expect(w.settled()).toBe(1);
  });

  it("keeps one timer on the core's next deadline and feeds it when it fires", () => {
    const w = setup();
    w.loop.feed((s, now) => s.start(now));
    expect(w.clock.pending()).toBe(1); // the socket's open timeout
    w.clock.advance(60);
    expect(w.executed.some((a) => a.kind === "CloseSocket")).toBe(true);
    expect(w.executed.filter((a) => a.kind === "OpenSocket").length).toBeGreaterThan(1);
  });

  it("logs an action that throws and runs the next ones", () => {
    const clock = new FakeClock();
    const seen: string[] = [];
    const loop = new CoreLoop(
      new Session(),
      clockOf(clock),
      (action) => {
        seen.push(action.kind);
        throw new Error("boom");
      },
      () => {},
    );
    loop.feed((s, now) => s.start(now));
    expect(seen.length).toBeGreaterThan(1);
  });

  it("schedules no timer after dispose", () => {
    const w = setup();
    w.loop.feed((s, now) => s.start(now));
    w.loop.dispose();
    expect(w.clock.pending()).toBe(0);
    w.loop.feed((s, now) => s.stop(now));
    expect(w.clock.pending()).toBe(0);
  });
});
