// Watches the notebook host for the end of the kernel that owns a widget.
//
// When the kernel restarts, JupyterLab and Notebook 7 keep the widget's model in the page (they
// only mark its comm as not live), so anywidget never runs the model's cleanup and a direct-mode
// session would go on, billed, with nobody in Python to see it. The widget manager that anywidget
// exposes as `model.widget_manager` is JupyterLab's (@jupyter-widgets/jupyterlab-manager): it holds
// the kernel connection and, for a notebook, its document context. Those are read duck-typed:
// other hosts (VS Code, Colab, solara) lack them and are simply not watched.

import { debug } from "./log";

/** A Lumino signal, as far as this module uses it. */
interface SignalLike<T> {
  connect(slot: (sender: unknown, value: T) => void): unknown;
  disconnect(slot: (sender: unknown, value: T) => void): unknown;
}

interface KernelLike {
  statusChanged?: SignalLike<string>;
  iopubMessage?: SignalLike<{ header?: { session?: unknown } }>;
}

interface ManagerLike {
  kernel?: KernelLike | null;
  context?: {
    sessionContext?: {
      kernelChanged?: SignalLike<{ newValue?: unknown } | null>;
      disposed?: SignalLike<void>;
    };
  } | null;
}

export type KernelLoss = "restarted" | "shut down" | "changed" | "closed";

/**
 * Kernel statuses that mean the kernel process behind the widget is gone. A restart asked from
 * this page shows as "restarting"; one asked by another client (a second tab, the REST API) only
 * as the new process's "starting", which the server may not relay (it re-subscribes late), so
 * the kernel's session id is watched too.
 */
const LOST_STATUSES: Record<string, KernelLoss> = {
  restarting: "restarted",
  autorestarting: "restarted",
  starting: "restarted",
  dead: "shut down",
};

function isSignal<T>(value: unknown): value is SignalLike<T> {
  const signal = value as SignalLike<T> | null | undefined;
  return typeof signal?.connect === "function" && typeof signal.disconnect === "function";
}

/**
 * Call `onLost` once when the kernel behind `manager` restarts, shuts down or is replaced, or the
 * notebook closes. Returns a function that stops watching. Does nothing on hosts that do not expose
 * these (the session then ends with the model, as anywidget disposes it there).
 */
export function watchKernel(manager: unknown, onLost: (loss: KernelLoss) => void): () => void {
  const host = (manager ?? {}) as ManagerLike;
  const undo: (() => void)[] = [];
  let done = false;
  const lost = (loss: KernelLoss): void => {
    if (done) return;
    done = true;
    stop();
    onLost(loss);
  };
  const watch = <T>(signal: unknown, slot: (sender: unknown, value: T) => void): void => {
    if (!isSignal<T>(signal)) return;
    signal.connect(slot);
    undo.push(() => signal.disconnect(slot));
  };
  const stop = (): void => {
    for (const step of undo.splice(0)) step();
  };

  let kernel: KernelLike | null | undefined;
  try {
    kernel = host.kernel;
    debug("watching the kernel:", Boolean(kernel?.statusChanged));
    watch<string>(kernel?.statusChanged, (_sender, status) => {
      const loss = LOST_STATUSES[status];
      if (loss) lost(loss);
    });
    // Every message a kernel process publishes carries that process's session id in its header;
    // a new id is a new process: the one that made this widget is gone.
    let session: unknown = null;
    watch<{ header?: { session?: unknown } }>(kernel?.iopubMessage, (_sender, message) => {
      const id = message?.header?.session;
      if (typeof id !== "string" || !id) return;
      if (session === null) session = id;
      else if (id !== session) lost("restarted");
    });
    const context = host.context;
    // shutting the kernel down also "changes" it, to none
    watch<{ newValue?: unknown } | null>(context?.sessionContext?.kernelChanged, (_sender, change) =>
      lost(change?.newValue ? "changed" : "shut down"),
    );
    // the notebook closes: its session context says so while the kernel connection still works,
    // so a kernel-mode session can still tell the relay to close
    watch<void>(context?.sessionContext?.disposed, () => lost("closed"));
  } catch {
    // a host whose manager has other getters that throw: not watched
  }
  return () => {
    done = true;
    stop();
  };
}

export function kernelLossMessage(loss: KernelLoss): string {
  const what = {
    restarted: "The kernel restarted",
    "shut down": "The kernel shut down",
    changed: "The notebook switched to another kernel",
    closed: "The notebook was closed",
  }[loss];
  return `${what}: this widget's session ended and it is no longer connected to Python. Run the cell again to make a new one.`;
}
