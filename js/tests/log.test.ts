import { afterEach, describe, expect, it, vi } from "vitest";

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
  vi.resetModules();
});

describe("debug", () => {
  it("reads the page's stored flag once, when the module loads, not on every line", async () => {
    const getItem = vi.fn((key: string) => (key === "decart-widget:debug" ? "1" : null));
    vi.stubGlobal("localStorage", { getItem });
    const lines = vi.spyOn(console, "debug").mockImplementation(() => {});
    const { debug } = await import("../src/log");
    debug("one");
    debug("two");
    expect(lines).toHaveBeenCalledTimes(2);
    expect(getItem).toHaveBeenCalledTimes(1);
  });

  it("is off by default, and DECART_WIDGET_DEBUG turns it on at any time", async () => {
    vi.stubGlobal("localStorage", { getItem: () => null });
    const lines = vi.spyOn(console, "debug").mockImplementation(() => {});
    const { debug } = await import("../src/log");
    debug("hidden");
    expect(lines).not.toHaveBeenCalled();
    vi.stubGlobal("DECART_WIDGET_DEBUG", true);
    debug("shown");
    expect(lines).toHaveBeenCalledWith("[decart-widget]", "shown");
  });

  it("a storage that throws (a sandboxed frame) leaves it off", async () => {
    vi.stubGlobal("localStorage", {
      getItem: () => {
        throw new DOMException("denied", "SecurityError");
      },
    });
    const lines = vi.spyOn(console, "debug").mockImplementation(() => {});
    const { debug } = await import("../src/log");
    debug("hidden");
    expect(lines).not.toHaveBeenCalled();
  });
});
