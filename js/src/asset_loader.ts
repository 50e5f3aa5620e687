// Front-end code the page loads only when it needs it: the media transports (webrtc_asset.ts, a
// few kB; livekit_room.ts with livekit-client, about half a megabyte) stay out of widget.js,
// whose size every notebook pays. The kernel sends an asset over the widget comm when asked
// (decart_widget/widget/_assets.py), never from a CDN:
//
//   front -> kernel  {type:"asset_request", name}
//   kernel -> front  {type:"asset", name, hash, index, count} + one binary buffer per chunk
//                    {type:"asset_error", name, kind, message}
//
// The chunks are imported as one ES module from a Blob URL. The module is kept once per page
// (on globalThis, shared by every widget and every bundle) under the asset's build id, so later
// sessions and other widgets reuse it and two builds of the widget never mix.

import type { Clock } from "./core_loop";
import { ConnectionLost, DecartError, fromKind } from "./errors";
import type { KernelChannel } from "./transports";

/** Ids of the assets built with this bundle, by name (sha-256 prefixes, set by js/build.mjs). */
declare const DW_ASSET_IDS: Record<string, string>;
const BUILD_IDS: Record<string, string> = typeof DW_ASSET_IDS === "object" ? DW_ASSET_IDS : {};

export const ASSET_TIMEOUT_MS = 30_000;

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

const importBlob: ModuleImporter = async (url) => import(/* @vite-ignore */ url);

export class AssetLoader {
  constructor(
    private readonly channel: KernelChannel,
    private readonly clock: Clock,
    private readonly importModule: ModuleImporter = importBlob,
    private readonly cache: Map<string, Promise<unknown>> = pageAssets(),
    private readonly buildIds: Record<string, string> = BUILD_IDS,
  ) {}

  /** The asset's module: from the page if loaded, else asked of the kernel (a failure is forgotten). */
  load(name: string): Promise<unknown> {
    const id = this.buildIds[name] ?? "";
    const key = `${name}@${id}`;
    let module = this.cache.get(key);
    if (!module) {
      module = this.receive(name, id).then((chunks) => this.evaluate(chunks));
      this.cache.set(key, module);
      module.catch(() => this.cache.delete(key));
    }
    return module;
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
