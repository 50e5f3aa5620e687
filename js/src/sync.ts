// Saving front-end changes to the kernel.
//
// `save_changes` alone is not enough: ipywidgets holds further state updates back until the
// kernel reports "idle" for the previous one, and ipykernel 7 handles comm messages that arrive
// during a top-level `await` cell without any busy/idle status, so every later update would stay
// buffered in the page for good. A custom message is never held back, so each save also sends the
// changed values as a `report`, which the kernel applies like a normal state update.
//
// Kernel signaling is different for the traits the kernel owns there (`prompt`, `enhance`,
// `image`: the kernel is their one sender to the service): the view asks the kernel to set them
// with a single `set` message (`requestSet`) and the model follows when the kernel's update
// comes back.

import type { WidgetModel, WidgetTraits } from "./traits";

type Binary = DataView | ArrayBuffer | Uint8Array;

function isBinary(value: unknown): value is Binary {
  return value instanceof DataView || value instanceof ArrayBuffer || value instanceof Uint8Array;
}

function toView(value: Binary): DataView {
  if (value instanceof DataView) return value;
  if (value instanceof ArrayBuffer) return new DataView(value);
  return new DataView(value.buffer, value.byteOffset, value.byteLength);
}

/** Save the given keys (already `set` on the model) and report them to the kernel. */
export function saveAndReport(model: WidgetModel, keys: Iterable<keyof WidgetTraits>): void {
  const values: Partial<WidgetTraits> = {};
  for (const key of new Set(keys)) (values as Record<string, unknown>)[key] = model.get(key);
  model.save_changes();
  sendState(model, "report", values);
}

/** The traits the kernel owns in kernel signaling, which the view asks it to set. */
export type KernelOwned = "prompt" | "enhance" | "image";

/**
 * Kernel signaling: ask the kernel to set `prompt`/`enhance`/`image` (one custom message), without
 * setting them on the model here. The kernel sets the traitlets, which sends the values back to
 * every view as a normal update, and relays the change to the service at once. Compared with
 * `saveAndReport` this is one comm message instead of two, and what reaches the page ahead of the
 * service's ack is one busy/idle pair and the kernel's update instead of two pairs and two echoes
 * (each status makes JupyterLab redraw its kernel indicators on the page's main thread). The
 * model is left alone on purpose: a value set here but not saved would ride along with the next
 * `save_changes` and could undo a newer value set from Python.
 */
export function requestSet(model: WidgetModel, values: Partial<Pick<WidgetTraits, KernelOwned>>): void {
  sendState(model, "set", values);
}

function sendState(model: WidgetModel, type: "report" | "set", values: Partial<WidgetTraits>): void {
  const state: Record<string, unknown> = {};
  const bufferKeys: string[] = [];
  const buffers: DataView[] = [];
  for (const [key, value] of Object.entries(values)) {
    if (isBinary(value)) {
      bufferKeys.push(key);
      buffers.push(toView(value));
    } else {
      state[key] = value ?? null;
    }
  }
  if (Object.keys(state).length || bufferKeys.length) {
    model.send({ type, state, buffer_keys: bufferKeys }, undefined, buffers);
  }
}
