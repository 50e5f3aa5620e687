import { afterEach, describe, expect, it, vi } from "vitest";
import { ASSET_TIMEOUT_MS, AssetLoader, SERVER_WAIT_MS, serverAssetBase } from "../src/asset_loader";
import { ConnectionLost, DecartError } from "../src/errors";
import { type FramesHost, lazyFrames } from "../src/lazy_frames";
import { lazyMedia } from "../src/lazy_media";
import type { MediaAction, MediaHost, MediaLink, MediaTransport } from "../src/media";
import type { KernelChannel } from "../src/transports";
import { clockOf, FakeClock, flush } from "./fakes";

/** The widget comm as a loader sees it: what the front end sent, and the kernel's replies. */
class FakeChannel implements KernelChannel {
  readonly sent: Record<string, unknown>[] = [];
  private readonly handlers = new Set<(content: unknown, buffers: unknown[]) => void>();
  send(content: Record<string, unknown>): void {
    this.sent.push(content);
  }
  listen(handler: (content: unknown, buffers: unknown[]) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }
  reply(content: unknown, buffers: unknown[] = []): void {
    for (const handler of [...this.handlers]) handler(content, buffers);
  }
  get listening(): number {
    return this.handlers.size;
  }
}

const bytes = (text: string): DataView => new DataView(new TextEncoder().encode(text).buffer);

function setup(ids: Record<string, string> = { livekit: "abc123" }) {
  const clock = new FakeClock();
  const channel = new FakeChannel();
  const imported: string[] = [];
  const blobs: Blob[] = [];
  vi.spyOn(URL, "createObjectURL").mockImplementation((blob) => {
    blobs.push(blob as Blob);
    return `blob:${blobs.length}`;
  });
  vi.spyOn(URL, "revokeObjectURL").mockImplementation(() => {});
  const cache = new Map<string, Promise<unknown>>();
  const loader = new AssetLoader(
    channel,
    clockOf(clock),
    async (url) => {
      imported.push(url);
      return { open: "module from " + url };
    },
    cache,
    ids,
  );
  return { clock, channel, imported, blobs, cache, loader };
}

afterEach(() => vi.restoreAllMocks());

describe("AssetLoader", () => {
  it("asks the kernel once, joins the chunks in index order and imports them as one module", async () => {
    const w = setup();
    const first = w.loader.load("livekit");
    const second = w.loader.load("livekit");
    expect(w.channel.sent).toEqual([{ type: "asset_request", name: "livekit" }]);
    w.channel.reply({ type: "asset", name: "other", hash: "x", index: 0, count: 1 }, [bytes("no")]);
    w.channel.reply({ type: "asset", name: "livekit", hash: "abc123ff", index: 1, count: 2 }, [bytes("export const b=2;")]);
    w.channel.reply({ type: "asset", name: "livekit", hash: "abc123ff", index: 0, count: 2 }, [bytes("export const a=1;")]);
    expect(await first).toEqual({ open: "module from blob:1" });
    expect(await second).toBe(await first);
    expect(w.blobs).toHaveLength(1);
    expect(await w.blobs[0]!.text()).toBe("export const a=1;export const b=2;");
    expect(w.blobs[0]!.type).toBe("text/javascript");
    expect(w.channel.listening).toBe(0);
    expect(w.clock.pending()).toBe(0);
    // another widget of the page, on its own comm, finds it in the page's cache
    const other = new AssetLoader(new FakeChannel(), clockOf(w.clock), async () => "never", w.cache, { livekit: "abc123" });
    expect(await other.load("livekit")).toBe(await first);
    expect(w.imported).toEqual(["blob:1"]);
  });

  it("a kernel's asset_error becomes the typed error, and the next session asks again", async () => {
    const w = setup();
    const failed = w.loader.load("livekit");
    w.channel.reply({ type: "asset_error", name: "livekit", kind: "invalid_input", message: "livekit.js is missing" });
    await expect(failed).rejects.toMatchObject({ kind: "invalid_input", message: "livekit.js is missing" });
    expect(w.cache.size).toBe(0);
    void w.loader.load("livekit");
    expect(w.channel.sent).toHaveLength(2);
  });

  it("gives up after ASSET_TIMEOUT_MS when the kernel does not answer", async () => {
    const w = setup();
    const pending = w.loader.load("livekit");
    w.clock.advance(ASSET_TIMEOUT_MS / 1000);
    await expect(pending).rejects.toBeInstanceOf(ConnectionLost);
    expect(w.channel.listening).toBe(0);
  });

  it("refuses an asset from another build than the page's widget", async () => {
    const w = setup();
    const pending = w.loader.load("livekit");
    w.channel.reply({ type: "asset", name: "livekit", hash: "ffff", index: 0, count: 1 }, [bytes("x")]);
    await expect(pending).rejects.toThrow(/another build/);
    expect(w.imported).toEqual([]);
  });
});

const ID = "0123456789abcdef";

/** A loader of a page whose Jupyter server is at `base`; `server` answers its HTTP imports. */
function serverSetup(base: string, server: (url: string) => Promise<unknown>, id = ID) {
  const clock = new FakeClock();
  const channel = new FakeChannel();
  const imported: string[] = [];
  vi.spyOn(URL, "createObjectURL").mockImplementation(() => "blob:comm");
  vi.spyOn(URL, "revokeObjectURL").mockImplementation(() => {});
  const cache = new Map<string, Promise<unknown>>();
  const importModule = async (url: string): Promise<unknown> => {
    imported.push(url);
    return url.startsWith("blob:") ? { from: "comm" } : server(url);
  };
  const ids = { livekit: id, webrtc: "fedcba9876543210" };
  const loader = new AssetLoader(channel, clockOf(clock), importModule, cache, ids, base);
  const answer = (name: string, hash: string): void =>
    channel.reply({ type: "asset", name, hash, index: 0, count: 1 }, [bytes("export {}")]);
  return { clock, channel, imported, loader, answer, cache };
}

const pageOf = (config: string | null, url: string): Document =>
  ({ URL: url, getElementById: (id: string) => (id === "jupyter-config-data" && config !== null ? { textContent: config } : null) }) as unknown as Document;

describe("serverAssetBase", () => {
  it("is the assets' path under the base URL JupyterLab and Notebook 7 write into the page", () => {
    expect(serverAssetBase(pageOf('{"baseUrl": "/user/ann/"}', "https://hub.example/user/ann/lab/tree/a.ipynb"))).toBe(
      "https://hub.example/user/ann/decart-widget/assets/",
    );
    expect(serverAssetBase(pageOf('{"baseUrl": "/"}', "http://127.0.0.1:8888/notebooks/a.ipynb"))).toBe(
      "http://127.0.0.1:8888/decart-widget/assets/",
    );
  });

  it("is null in a page without that config (VS Code, Colab), with a broken one, or for another origin", () => {
    expect(serverAssetBase(pageOf(null, "vscode-webview://abc/index.html"))).toBeNull();
    expect(serverAssetBase(pageOf("{not json", "http://127.0.0.1:8888/lab"))).toBeNull();
    expect(serverAssetBase(pageOf('{"baseUrl": "https://elsewhere.example/"}', "http://127.0.0.1:8888/lab"))).toBeNull();
    expect(serverAssetBase(undefined)).toBeNull();
  });
});

describe("AssetLoader over the page's Jupyter server", () => {
  it("imports the asset from the URL named by its build id; the kernel is not asked", async () => {
    const w = serverSetup("http://a.test/decart-widget/assets/", async (url) => ({ from: url }));
    const module = await w.loader.load("livekit");
    expect(module).toEqual({ from: `http://a.test/decart-widget/assets/${ID}/livekit.js` });
    expect(await w.loader.load("livekit")).toBe(module);
    expect(w.imported).toHaveLength(1);
    expect(w.channel.sent).toEqual([]);
    expect(w.clock.pending()).toBe(0);
  });

  it("falls back to the comm at once when the server does not serve it (404), and asks the server no more", async () => {
    const w = serverSetup("http://b.test/decart-widget/assets/", async () => {
      throw new TypeError("Failed to fetch dynamically imported module");
    });
    const pending = w.loader.load("livekit");
    await flush();
    expect(w.channel.sent).toEqual([{ type: "asset_request", name: "livekit" }]);
    w.answer("livekit", `${ID}ffff`);
    expect(await pending).toEqual({ from: "comm" });
    // the next asset of the page goes to the kernel directly
    const webrtc = w.loader.load("webrtc");
    await flush();
    expect(w.imported.filter((url) => url.startsWith("http"))).toHaveLength(1);
    w.answer("webrtc", "fedcba9876543210aa");
    expect(await webrtc).toEqual({ from: "comm" });
  });

  it("the comm's hash check still applies after a fallback: an asset of another build is refused", async () => {
    const w = serverSetup("http://c.test/decart-widget/assets/", async () => {
      throw new TypeError("404");
    });
    const pending = w.loader.load("livekit");
    await flush();
    w.answer("livekit", "ffffffffffffffff");
    await expect(pending).rejects.toThrow(/another build/);
    expect(w.imported).toEqual([`http://c.test/decart-widget/assets/${ID}/livekit.js`]);
  });

  it("asks the kernel too when the server has not answered within SERVER_WAIT_MS; the first answer wins", async () => {
    let release: (module: unknown) => void = () => {};
    const w = serverSetup("http://d.test/decart-widget/assets/", () => new Promise((resolve) => (release = resolve)));
    const pending = w.loader.load("livekit");
    await flush();
    expect(w.channel.sent).toEqual([]);
    w.clock.advance(SERVER_WAIT_MS / 1000);
    expect(w.channel.sent).toEqual([{ type: "asset_request", name: "livekit" }]);
    w.answer("livekit", ID);
    expect(await pending).toEqual({ from: "comm" });
    release({ from: "server, late" });
    expect(await w.loader.load("livekit")).toEqual({ from: "comm" });
  });

  it("a server answer that comes first after the wait still wins over the comm", async () => {
    let release: (module: unknown) => void = () => {};
    const w = serverSetup("http://e.test/decart-widget/assets/", () => new Promise((resolve) => (release = resolve)));
    const pending = w.loader.load("livekit");
    w.clock.advance(SERVER_WAIT_MS / 1000);
    release({ from: "server" });
    expect(await pending).toEqual({ from: "server" });
  });

  it("never builds a server URL without a build id of the page's widget.js", async () => {
    const w = serverSetup("http://f.test/decart-widget/assets/", async (url) => ({ from: url }), "../../etc");
    const pending = w.loader.load("livekit");
    await flush();
    expect(w.imported).toEqual([]);
    expect(w.channel.sent).toEqual([{ type: "asset_request", name: "livekit" }]);
    w.answer("livekit", "../../etc");
    expect(await pending).toEqual({ from: "comm" });
  });
});

describe("AssetLoader.warm: a widget was made, its first session will need the asset", () => {
  it("imports it from the page's server at once; the session's load finds it, and the kernel is never asked", async () => {
    const w = serverSetup("http://g.test/decart-widget/assets/", async (url) => ({ from: url }));
    w.loader.warm("livekit");
    w.loader.warm("livekit");
    // another widget of the page, made before the import ends, does not import it again
    new AssetLoader(new FakeChannel(), clockOf(w.clock), async () => "again", w.cache, { livekit: ID }, "http://g.test/decart-widget/assets/").warm("livekit");
    expect(w.imported).toEqual([`http://g.test/decart-widget/assets/${ID}/livekit.js`]);
    await flush();
    expect(await w.loader.load("livekit")).toEqual({ from: w.imported[0] });
    expect(w.imported).toHaveLength(1);
    expect(w.channel.sent).toEqual([]);
  });

  it("never asks the kernel itself: after a failed warm-up the session's load goes to the kernel", async () => {
    const w = serverSetup("http://h.test/decart-widget/assets/", async () => {
      throw new TypeError("404");
    });
    w.loader.warm("livekit");
    await flush();
    expect(w.channel.sent).toEqual([]);
    const pending = w.loader.load("livekit");
    await flush();
    expect(w.channel.sent).toEqual([{ type: "asset_request", name: "livekit" }]);
    expect(w.imported.filter((url) => url.startsWith("http"))).toHaveLength(1);
    w.answer("livekit", ID);
    expect(await pending).toEqual({ from: "comm" });
  });

  it("a load during the warm-up joins its import, with the same fallback when the server is slow", async () => {
    let release: (module: unknown) => void = () => {};
    const w = serverSetup("http://i.test/decart-widget/assets/", () => new Promise((resolve) => (release = resolve)));
    w.loader.warm("livekit");
    const pending = w.loader.load("livekit");
    await flush();
    expect(w.imported).toHaveLength(1);
    expect(w.channel.sent).toEqual([]);
    w.clock.advance(SERVER_WAIT_MS / 1000);
    expect(w.channel.sent).toEqual([{ type: "asset_request", name: "livekit" }]);
    release({ from: "server" });
    expect(await pending).toEqual({ from: "server" });
  });

  it("does nothing in a page without a server (VS Code): the kernel is asked when a session starts", async () => {
    const w = serverSetup("", async (url) => ({ from: url }));
    w.loader.warm("livekit");
    await flush();
    expect(w.imported).toEqual([]);
    expect(w.channel.sent).toEqual([]);
  });
});

/** A host whose loadAsset is under the test's control. */
function lazySetup() {
  const failures: DecartError[] = [];
  const loads: string[] = [];
  let settle: { resolve(module: unknown): void; reject(error: unknown): void } | null = null;
  const host: MediaHost = {
    clock: clockOf(new FakeClock()),
    toCore: () => {},
    track: () => null,
    iceServers: () => [],
    remoteStream: () => {},
    stats: () => {},
    loadAsset: (name) => {
      loads.push(name);
      return new Promise((resolve, reject) => (settle = { resolve, reject }));
    },
    fail: (error) => failures.push(error),
  };
  const calls: string[] = [];
  const inner: MediaLink = {
    remoteStream: { id: "out" } as unknown as MediaStream,
    preload: () => calls.push("preload"),
    prepare: () => calls.push("prepare"),
    handle: (action: MediaAction) => calls.push(action.kind),
    replaceTrack: async () => void calls.push("replaceTrack"),
    discardPrepared: () => calls.push("discardPrepared"),
    dispose: () => calls.push("dispose"),
  };
  const module: MediaTransport = { open: () => inner };
  const link = lazyMedia("livekit").open(host);
  return { link, host, loads, calls, failures, module, settle: () => settle! };
}

describe("lazyMedia", () => {
  it("asks its host to warm the asset up when the widget is made (the server's copy, never the kernel's)", () => {
    const warmed: string[] = [];
    const host = { ...lazySetup().host, warmAsset: (name: string) => warmed.push(name) };
    lazyMedia("livekit").open(host);
    expect(warmed).toEqual(["livekit"]);
  });

  it("loads the asset when the session starts connecting and replays the core's actions on its link, in order", async () => {
    const w = lazySetup();
    expect(w.loads).toEqual([]); // nothing at construction: only a Gen-B session loads it
    w.link.prepare();
    w.link.handle({ kind: "StartPeer" });
    w.link.handle({ kind: "ClosePeer" });
    expect(w.link.remoteStream).toBeNull();
    w.settle().resolve(w.module);
    await flush();
    expect(w.loads).toEqual(["livekit"]);
    expect(w.calls).toEqual(["prepare", "StartPeer", "ClosePeer"]);
    expect(w.link.remoteStream).toEqual({ id: "out" });
    w.link.handle({ kind: "ClosePeer" });
    await w.link.replaceTrack(null);
    w.link.dispose();
    expect(w.calls.slice(3)).toEqual(["ClosePeer", "replaceTrack", "dispose"]);
  });

  it("an asset that cannot load ends the session, with the loader's error; a later start asks again", async () => {
    const w = lazySetup();
    w.link.prepare();
    w.link.handle({ kind: "ClosePeer" });
    w.settle().reject(new DecartError("The kernel did not send the livekit asset"));
    await flush();
    expect(w.failures.map((e) => e.message)).toEqual(["The kernel did not send the livekit asset"]);
    w.link.prepare();
    expect(w.loads).toEqual(["livekit", "livekit"]);
  });

  it("preload asks for the asset at once; the handshake's steps then run on the loaded link", async () => {
    const w = lazySetup();
    w.link.preload();
    w.link.preload(); // one request
    expect(w.loads).toEqual(["livekit"]);
    w.settle().resolve(w.module);
    await flush();
    expect(w.calls).toEqual([]); // loaded, nothing run yet
    w.link.prepare();
    w.link.handle({ kind: "JoinRoom", url: "ws://room", token: "t", roomName: "r", sessionId: null });
    w.link.preload(); // loaded: nothing more to ask
    expect(w.loads).toEqual(["livekit"]);
    expect(w.calls).toEqual(["prepare", "JoinRoom"]); // on the spot, no wait for a load
  });

  it("a preload that fails ends the session when it first needs the link, once; the next start asks again", async () => {
    const w = lazySetup();
    w.link.preload();
    w.settle().reject(new DecartError("livekit.js is missing"));
    await flush();
    expect(w.failures).toEqual([]); // the session has not needed it yet
    w.link.handle({ kind: "ClosePeer" }); // not needed: still no failure
    expect(w.failures).toEqual([]);
    w.link.prepare(); // the socket connects: the session needs the link now
    await flush();
    expect(w.failures.map((e) => e.message)).toEqual(["livekit.js is missing"]);
    expect(w.loads).toEqual(["livekit"]); // the failure was told, not asked again
    w.link.preload();
    expect(w.loads).toEqual(["livekit", "livekit"]);
    w.settle().resolve(w.module);
    await flush();
    w.link.prepare();
    expect(w.calls).toEqual(["prepare"]);
  });

  it("a module without a media transport is refused", async () => {
    const w = lazySetup();
    w.link.handle({ kind: "StartPeer" });
    w.settle().resolve({ something: "else" });
    await flush();
    expect(w.failures[0]?.message).toMatch(/no media transport/);
  });

  it("a widget disposed while the asset loads disposes the link it gets, and runs nothing on it", async () => {
    const w = lazySetup();
    w.link.prepare();
    w.link.dispose();
    w.settle().resolve(w.module);
    await flush();
    expect(w.calls).toEqual(["dispose"]);
    expect(w.failures).toEqual([]);
  });
});

describe("lazyFrames", () => {
  function framesSetup() {
    const channel = new FakeChannel();
    const loads: string[] = [];
    let settle: { resolve(module: unknown): void; reject(error: unknown): void } | null = null;
    const seen: unknown[] = [];
    const module = {
      open: (host: FramesHost) => {
        host.kernel.listen((content) => seen.push(content));
        return { dispose: () => seen.push("disposed") };
      },
    };
    const frames = lazyFrames({
      clock: clockOf(new FakeClock()),
      kernel: channel,
      stream: () => null,
      active: () => true,
      subscribe: () => () => {},
      loadAsset: (name) => {
        loads.push(name);
        return new Promise((resolve, reject) => (settle = { resolve, reject }));
      },
    });
    return { channel, loads, seen, module, frames, settle: () => settle! };
  }

  it("loads the capture with the first frame request and hands it the requests that came meanwhile", async () => {
    const w = framesSetup();
    w.channel.reply({ type: "signal", id: 3 });
    expect(w.loads).toEqual([]); // only a frame request loads it
    w.channel.reply({ type: "frame_request", id: 1 });
    w.channel.reply({ type: "frame_request", id: 2 });
    expect(w.loads).toEqual(["frames"]);
    w.settle().resolve(w.module);
    await flush();
    expect(w.seen).toEqual([{ type: "frame_request", id: 1 }, { type: "frame_request", id: 2 }]);
    w.channel.reply({ type: "frame_request", id: 4 });
    expect(w.seen.at(-1)).toEqual({ type: "frame_request", id: 4 });
    expect(w.loads).toHaveLength(1);
    w.frames.dispose();
    expect(w.seen.at(-1)).toBe("disposed");
  });

  it("a frame stream (w.on_frame before any snapshot) loads the capture too, and reaches it", async () => {
    const w = framesSetup();
    w.channel.reply({ type: "frame_stream", id: 1, which: "output", fps: 2 });
    expect(w.loads).toEqual(["frames"]);
    w.settle().resolve(w.module);
    await flush();
    expect(w.seen).toEqual([{ type: "frame_stream", id: 1, which: "output", fps: 2 }]);
  });

  it("answers the waiting requests with a frame_error when the capture cannot load", async () => {
    const w = framesSetup();
    w.channel.reply({ type: "frame_request", id: 7 });
    w.settle().reject(new Error("no such asset"));
    await flush();
    expect(w.channel.sent).toEqual([
      { type: "frame_error", id: 7, kind: "unavailable", message: "The page could not load its frame capture: no such asset" },
    ]);
    w.channel.reply({ type: "frame_request", id: 8 });
    expect(w.loads).toHaveLength(2); // asked again
  });
});
