// Saving front-end changes to the kernel.
//
// `save_changes` alone is not enough: ipywidgets holds further state updates back until the
// kernel reports "idle" for the previous one, and ipykernel 7 handles comm messages that arrive
// during a top-level `await` cell without any busy/idle status, so every later update would stay
// buffered in the page for good. A custom message is never held back, so each save also sends the
// changed values as a `report`, which the kernel applies like a normal state update.

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
  const state: Record<string, unknown> = {};
  const bufferKeys: string[] = [];
  const buffers: DataView[] = [];
  for (const key of new Set(keys)) {
    const value = model.get(key);
    if (isBinary(value)) {
      bufferKeys.push(key);
      buffers.push(toView(value));
    } else {
      state[key] = value ?? null;
    }
  }
  model.save_changes();
  if (Object.keys(state).length || bufferKeys.length) {
    model.send({ type: "report", state, buffer_keys: bufferKeys }, undefined, buffers);
  }
}
