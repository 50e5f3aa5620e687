// Debug logging, off unless asked for: localStorage "decart-widget:debug" = "1", or
// globalThis.DECART_WIDGET_DEBUG = true. Never pass credentials or full URLs here.

function enabled(): boolean {
  try {
    return (
      (globalThis as { DECART_WIDGET_DEBUG?: unknown }).DECART_WIDGET_DEBUG === true ||
      globalThis.localStorage?.getItem("decart-widget:debug") === "1"
    );
  } catch {
    return false;
  }
}

export function debug(...args: unknown[]): void {
  if (enabled()) console.debug("[decart-widget]", ...args);
}
