// Debug logging, off unless asked for: localStorage "decart-widget:debug" = "1" (read once, when the
// page loads the widget's module: the page's first read of its storage is slow, ~4 ms in
// bench/ttff.py's profile, and was paid at every session's start), or
// globalThis.DECART_WIDGET_DEBUG = true (at any time). Never pass credentials or full URLs here.

function storedFlag(): boolean {
  try {
    return globalThis.localStorage?.getItem("decart-widget:debug") === "1";
  } catch {
    return false;
  }
}

const STORED = storedFlag();

export function debug(...args: unknown[]): void {
  if (STORED || (globalThis as { DECART_WIDGET_DEBUG?: unknown }).DECART_WIDGET_DEBUG === true) {
    console.debug("[decart-widget]", ...args);
  }
}
