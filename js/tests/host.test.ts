import { describe, expect, it } from "vitest";
import { kernelLossMessage, watchKernel, type KernelLoss } from "../src/host";

/** A Lumino-like signal: connect/disconnect slots, emit(value). */
class FakeSignal<T> {
  readonly slots = new Set<(sender: unknown, value: T) => void>();
  connect(slot: (sender: unknown, value: T) => void): boolean {
    this.slots.add(slot);
    return true;
  }
  disconnect(slot: (sender: unknown, value: T) => void): boolean {
    return this.slots.delete(slot);
  }
  emit(value: T): void {
    for (const slot of [...this.slots]) slot(this, value);
  }
}

/** What @jupyter-widgets/jupyterlab-manager's notebook WidgetManager exposes. */
function labManager() {
  const kernel = {
    statusChanged: new FakeSignal<string>(),
    iopubMessage: new FakeSignal<{ header?: { session?: unknown } }>(),
  };
  const sessionContext = {
    kernelChanged: new FakeSignal<{ newValue?: unknown } | null>(),
    disposed: new FakeSignal<void>(),
  };
  return { kernel, context: { sessionContext } };
}

function watched(manager: unknown) {
  const losses: KernelLoss[] = [];
  const unwatch = watchKernel(manager, (loss) => losses.push(loss));
  return { losses, unwatch };
}

const signals = (m: ReturnType<typeof labManager>) => [
  m.kernel.statusChanged,
  m.kernel.iopubMessage,
  m.context.sessionContext.kernelChanged,
  m.context.sessionContext.disposed,
];

describe("watchKernel", () => {
  it("ignores the statuses of a working kernel", () => {
    const m = labManager();
    const { losses } = watched(m);
    for (const status of ["busy", "idle", "busy", "idle", "unknown"]) m.kernel.statusChanged.emit(status);
    expect(losses).toEqual([]);
  });

  it.each([
    ["restarting", "restarted"],
    ["autorestarting", "restarted"],
    ["starting", "restarted"],
    ["dead", "shut down"],
  ])("status %s means the kernel %s, reported once, then stops watching", (status, loss) => {
    const m = labManager();
    const { losses } = watched(m);
    m.kernel.statusChanged.emit(status);
    m.kernel.statusChanged.emit("dead");
    expect(losses).toEqual([loss]);
    expect(signals(m).every((s) => s.slots.size === 0)).toBe(true);
  });

  it("a new kernel session id on IOPub is a new kernel process", () => {
    const m = labManager();
    const { losses } = watched(m);
    m.kernel.iopubMessage.emit({ header: { session: "kernel-1" } });
    m.kernel.iopubMessage.emit({ header: {} });
    m.kernel.iopubMessage.emit({ header: { session: "kernel-1" } });
    expect(losses).toEqual([]);
    m.kernel.iopubMessage.emit({ header: { session: "kernel-2" } });
    expect(losses).toEqual(["restarted"]);
  });

  it("tells a kernel change from a shutdown (a change to no kernel)", () => {
    const a = labManager();
    const changed = watched(a);
    a.context.sessionContext.kernelChanged.emit({ newValue: { id: "other" } });
    expect(changed.losses).toEqual(["changed"]);
    const b = labManager();
    const shut = watched(b);
    b.context.sessionContext.kernelChanged.emit({ newValue: null });
    expect(shut.losses).toEqual(["shut down"]);
  });

  it("the notebook closing is a loss too", () => {
    const m = labManager();
    const { losses } = watched(m);
    m.context.sessionContext.disposed.emit();
    expect(losses).toEqual(["closed"]);
  });

  it("unwatching disconnects every slot", () => {
    const m = labManager();
    const { losses, unwatch } = watched(m);
    unwatch();
    expect(signals(m).every((s) => s.slots.size === 0)).toBe(true);
    m.kernel.statusChanged.emit("dead");
    expect(losses).toEqual([]);
  });

  it.each([
    ["no manager", undefined],
    ["a manager without a kernel (VS Code, solara)", { get_model: () => null }],
    ["a kernel without signals", { kernel: { status: "idle" } }],
    [
      "a manager whose getters throw",
      Object.defineProperty({}, "kernel", {
        get() {
          throw new Error("no kernel here");
        },
      }),
    ],
  ])("%s is simply not watched", (_name, manager) => {
    const { losses, unwatch } = watched(manager);
    expect(losses).toEqual([]);
    unwatch();
  });

  it("says what happened and what to do", () => {
    expect(kernelLossMessage("restarted")).toMatch(/^The kernel restarted: .*Run the cell again/);
    expect(kernelLossMessage("shut down")).toMatch(/^The kernel shut down/);
    expect(kernelLossMessage("closed")).toMatch(/^The notebook was closed/);
  });
});
