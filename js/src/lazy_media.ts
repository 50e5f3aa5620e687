// A media transport whose code is an asset the page loads on demand (asset_loader.ts): LiveKit's
// link and client (livekit_room.ts) stay out of widget.js. The asset is asked for when a session
// starts (preload), so its transfer, the browser's compile of it and its evaluation overlap the
// source opening, the credential and the control handshake instead of following them (for
// LiveKit's half a megabyte, ~100 ms that bench/ttff.py saw between the room info and the room's
// signal socket); the core's media actions wait for it, in order. An asset that cannot load ends
// the session with the loader's message when the session first needs the link (a later start
// asks again).

import { asError } from "./errors";
import type { MediaAction, MediaHost, MediaLink, MediaTransport } from "./media";

class LazyLink implements MediaLink {
  private link: MediaLink | null = null;
  private loading: Promise<MediaLink> | null = null;
  /** a preload's failure, reported when the session first needs the link */
  private failure: unknown = null;
  private disposed = false;

  constructor(
    private readonly asset: string,
    private readonly host: MediaHost,
  ) {
    // a widget of this transport was made: its first session will need the asset, which the page's
    // server (when it has one) gives without the kernel, so a Start pressed later finds it loaded
    host.warmAsset?.(asset);
  }

  get remoteStream(): MediaStream | null {
    return this.link?.remoteStream ?? null;
  }

  preload(): void {
    if (this.link || this.loading) return;
    this.failure = null;
    this.load().catch((error: unknown) => (this.failure = error));
  }

  prepare(): void {
    this.later((link) => link.prepare(), true);
  }

  handle(action: MediaAction): void {
    this.later((link) => link.handle(action), action.kind !== "ClosePeer");
  }

  async replaceTrack(track: MediaStreamTrack | null): Promise<void> {
    await this.link?.replaceTrack(track);
  }

  discardPrepared(): void {
    this.link?.discardPrepared();
  }

  dispose(): void {
    this.disposed = true;
    this.link?.dispose();
  }

  /** Run `step` on the link once it is loaded; `needed`: a failed load ends the session (a
   * ClosePeer does not need it: it comes when the session ends anyway). */
  private later(step: (link: MediaLink) => void, needed: boolean): void {
    if (this.link) {
      step(this.link);
      return;
    }
    const failed = (error: unknown): void => {
      if (!needed || this.disposed) return;
      this.failure = null;
      this.host.fail(asError(error));
    };
    if (this.failure) failed(this.failure);
    else this.load().then((link) => this.disposed || step(link), failed);
  }

  private load(): Promise<MediaLink> {
    return (this.loading ??= this.host
      .loadAsset(this.asset)
      .then((module) => {
        const transport = module as Partial<MediaTransport>;
        if (typeof transport.open !== "function") throw new Error(`the ${this.asset} asset has no media transport`);
        const link = transport.open(this.host);
        if (this.disposed) link.dispose();
        else this.link = link;
        return link;
      })
      .catch((error: unknown) => {
        this.loading = null;
        throw error;
      }));
  }
}

/** The media transport exported (as `open`) by the asset `name`, loaded when first needed. */
export function lazyMedia(name: string): MediaTransport {
  return { open: (host) => new LazyLink(name, host) };
}
