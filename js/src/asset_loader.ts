// Front-end code the page loads only when it needs it: the media transports (webrtc_asset.ts, a
// few kB; livekit_room.ts with livekit-client, about half a megabyte) stay out of widget.js,
// whose size every notebook pays. The kernel sends an asset over the widget comm when asked
// (decart_widget/widget/_assets.py), never from a CDN:
//
//   front -> kernel  {type:"asset_request", name}
//   kernel -> front  {type:"asset", name, hash, index, count} + one binary buffer per chunk
//                    {type:"asset_error", name, kind, message}
//
// The chunks are imported as one ES module from a Blob URL. In JupyterLab and Notebook 7 the page
// first imports the asset over HTTP from the package's server extension
// (decart_widget/_asset_route.py) at <base URL>decart-widget/assets/<build id>/<name>.js: the
// server answers only for the file of that hash, and the browser keeps it in its HTTP cache and
// V8's code cache across pages (never for a blob URL). A page without that server (VS Code,
// Colab, a server without the extension, another version's) gets a 404 or no URL at all and falls
// back to the comm at once; an import still pending after SERVER_WAIT_MS asks the kernel too, and
// the first answer wins. The module is kept once per page
// (on globalThis, shared by every widget and every bundle) under the asset's build id, so later
// sessions and other widgets reuse it and two builds of the widget never mix.

import type { Clock } from "./core_loop";
import { ConnectionLost, DecartError, fromKind } from "./errors";
import type { KernelChannel } from "./transports";

/** Ids of the assets built with this bundle, by name (sha-256 prefixes, set by js/build.mjs). */
declare const DW_ASSET_IDS: Record<string, string>;
const BUILD_IDS: Record<string, string> = typeof DW_ASSET_IDS === "object" ? DW_ASSET_IDS : {};

export const ASSET_TIMEOUT_MS = 30_000;
export const SERVER_WAIT_MS = 3_000;

export type ModuleImporter = (url: string) => Promise<unknown>;

interface AssetMessage {
  type?: unknown;
  name?: unknown;
  hash?: unknown;
  index?: unknown;
  count?: unknown;
  kind?: unknown;
  message?: unknown;
}

/** The page's loaded assets: one promise per name and build, whoever asked first. */
export function pageAssets(): Map<string, Promise<unknown>> {
  const holder = globalThis as { [key: symbol]: Map<string, Promise<unknown>> | undefined };
  const key = Symbol.for("decart_widget.assets");
  return (holder[key] ??= new Map());
}

const importUrl: ModuleImporter = async (url) => import(/* @vite-ignore */ url);

/** Where the page's Jupyter server serves the assets, or null: JupyterLab and Notebook 7 write
 * the server's base URL (a path ending in "/") into the page (#jupyter-config-data); only a URL
 * of the page's own origin is used. */
export function serverAssetBase(doc: Document | undefined = globalThis.document): string | null {
  try {
    const { baseUrl } = JSON.parse(doc.getElementById("jupyter-config-data")?.textContent ?? "") as { baseUrl: string };
    const url = new URL(`${baseUrl}decart-widget/assets/`, doc.URL);
    return url.origin === new URL(doc.URL).origin ? url.href : null;
  } catch {
    return null;
  }
}

/** Bases whose server did not serve an asset: later loads in the page go to the kernel directly. */
const failedBases = new Set<string>();

export class AssetLoader {
  constructor(
    private readonly channel: KernelChannel,
    private readonly clock: Clock,
    private readonly importModule: ModuleImporter = importUrl,
    private readonly cache: Map<string, Promise<unknown>> = pageAssets(),
    private readonly buildIds: Record<string, string> = BUILD_IDS,
    private readonly serverBase: string | null = serverAssetBase(),
  ) {}

  /** The asset's module: from the page if loaded, else asked of the kernel (a failure is forgotten). */
  load(name: string): Promise<unknown> {
    const id = this.buildIds[name] ?? "";
    const key = `${name}@${id}`;
    let module = this.cache.get(key);
    if (!module) {
      module = this.fetch(name, id, this.cache.get(`~${key}`));
      this.cache.set(key, module);
      module.catch(() => this.cache.delete(key));
    }
    return module;
  }

  /** Import the asset from the page's server ahead of need (a widget was made), never asking the
   * kernel: a load() meanwhile joins it, as it would its own import (the same fallback). */
  warm(name: string): void {
    const id = this.buildIds[name] ?? "";
    const key = `${name}@${id}`;
    const url = this.serverUrl(name, id);
    if (!url || this.cache.has(key) || this.cache.has(`~${key}`)) return;
    const module = this.importModule(url);
    this.cache.set(`~${key}`, module); // one warm-up per page, whichever widget asks
    module.then(
      () => this.cache.has(key) || this.cache.set(key, module),
      () => failedBases.add(this.serverBase!),
    );
  }

  private serverUrl(name: string, id: string): string | null {
    const base = this.serverBase;
    return base && !failedBases.has(base) && /^[0-9a-f]{16}$/.test(id) ? `${base}${id}/${name}.js` : null;
  }

  /** From the page's server if it has the asset of this build (`pending`: an import of it already
   * under way), else (or meanwhile) the kernel. */
  private fetch(name: string, id: string, pending?: Promise<unknown>): Promise<unknown> {
    const url = this.serverUrl(name, id);
    const viaComm = (): Promise<unknown> => this.receive(name, id).then((chunks) => this.evaluate(chunks));
    if (!url) return viaComm();
    return new Promise((resolve, reject) => {
      let comm: Promise<unknown> | null = null;
      const fallBack = (): void => {
        this.clock.clearTimeout(timer);
        (comm ??= viaComm()).then(resolve, reject);
      };
      const timer = this.clock.setTimeout(fallBack, SERVER_WAIT_MS);
      (pending ?? this.importModule(url)).then(
        (module) => {
          this.clock.clearTimeout(timer);
          resolve(module);
        },
        () => {
          failedBases.add(this.serverBase!);
          fallBack();
        },
      );
    });
  }

  private receive(name: string, id: string): Promise<ArrayBuffer[]> {
    return new Promise((resolve, reject) => {
      const chunks: ArrayBuffer[] = [];
      const finish = (error?: DecartError): void => {
        this.clock.clearTimeout(timer);
        stop();
        if (error) reject(error);
        else resolve(chunks);
      };
      const timer = this.clock.setTimeout(
        () => finish(new ConnectionLost(`The kernel did not send the ${name} asset: is it still running?`)),
        ASSET_TIMEOUT_MS,
      );
      const stop = this.channel.listen((content, buffers) => {
        const { type, name: about, hash, index, count, kind, message } = (content ?? {}) as AssetMessage;
        if (about !== name) return;
        if (type === "asset_error") {
          finish(fromKind(String(kind), String(message)));
        } else if (type === "asset") {
          if (!String(hash).startsWith(id)) {
            finish(new DecartError(`The kernel's ${name} asset is of another build: re-run the cell.`));
            return;
          }
          const chunk = toArrayBuffer(buffers[0]);
          if (chunk) chunks[Number(index)] = chunk;
          if (chunks.filter(Boolean).length === count) finish();
        }
      });
      this.channel.send({ type: "asset_request", name });
    });
  }

  private async evaluate(chunks: ArrayBuffer[]): Promise<unknown> {
    const url = URL.createObjectURL(new Blob(chunks, { type: "text/javascript" }));
    try {
      return await this.importModule(url);
    } finally {
      URL.revokeObjectURL(url);
    }
  }
}

function toArrayBuffer(buffer: unknown): ArrayBuffer | null {
  if (buffer instanceof ArrayBuffer) return buffer;
  if (!ArrayBuffer.isView(buffer)) return null;
  return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength) as ArrayBuffer;
}
