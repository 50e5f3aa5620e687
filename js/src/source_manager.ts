// The input source of a widget (camera, screen, video file or synthetic: sources.ts) and when
// views may show it. At most one source is open; each opening has its own AbortController, so a
// source that finishes opening after it was released (or replaced) is stopped at once.

import type { Clock } from "./core_loop";
import { ConnectionLost } from "./errors";
import type { InputSource, SourceKind, SourceOpener, SourceOptions } from "./sources";

/**
 * How long the input preview waits for the transformed output before it shows anyway. While a
 * session starts, the preview (a full-size video the page scales every frame) competes with the
 * handshake, the encoder and the decoder for the CPU: on a 2-core machine showing it at once
 * delayed the first transformed frame by ~25 ms (bench/ttff.py --baseline). Input and output then
 * appear together.
 */
export const PREVIEW_HOLD_MS = 1000;

export interface SourceHost {
  clock: Clock;
  open: SourceOpener;
  /** what to open, read when opening */
  settings(): { kind: SourceKind; options: SourceOptions };
  /** whether the transformed output already shows (then the preview need not wait) */
  hasOutput(): boolean;
  /** the open source or the preview changed: views redraw */
  changed(): void;
  /** the open source's track ended by itself (unplugged, screen sharing stopped) */
  ended(kind: SourceKind): void;
}

export class SourceManager {
  /** the live input stream, shared by every view's preview */
  localStream: MediaStream | null = null;
  private source: InputSource | null = null;
  /** the opening in progress (or the last one): aborted when released or replaced */
  private opening: AbortController | null = null;
  /** whether views show the input preview yet (see PREVIEW_HOLD_MS) */
  private previewShown = false;
  private previewTimer: unknown = null;

  constructor(private readonly host: SourceHost) {}

  get open(): boolean {
    return this.source !== null;
  }

  get track(): MediaStreamTrack | null {
    return this.source?.track ?? null;
  }

  /** The input stream views show: held back until the output arrives or PREVIEW_HOLD_MS passed. */
  get previewStream(): MediaStream | null {
    return this.previewShown ? this.localStream : null;
  }

  /** The open source, or a new one; rejects with ConnectionLost if released while opening. */
  async ensure(): Promise<InputSource> {
    if (this.source) return this.source;
    this.opening?.abort();
    const opening = new AbortController();
    this.opening = opening;
    const { kind, options } = this.host.settings();
    const source = await this.host.open(kind, options);
    if (opening.signal.aborted) {
      source.stop(); // released while opening
      throw new ConnectionLost("stopped");
    }
    this.source = source;
    this.localStream = source.stream;
    this.holdPreview();
    source.track.addEventListener?.("ended", () => {
      if (source === this.source) this.host.ended(kind);
    });
    this.host.changed();
    return source;
  }

  /** The output arrived: show the input too. */
  showPreview(): void {
    this.clearPreviewTimer();
    this.previewShown = true;
  }

  /** Stop the source; `keepPreview`: a new one follows under a running session. */
  release(keepPreview = false): void {
    this.clearPreviewTimer();
    this.previewShown &&= keepPreview;
    this.opening?.abort();
    this.opening = null;
    const source = this.source;
    this.source = null;
    this.localStream = null;
    if (source) {
      source.stop();
      this.host.changed();
    }
  }

  private holdPreview(): void {
    this.clearPreviewTimer();
    if (this.previewShown || this.host.hasOutput()) {
      this.previewShown = true; // a new track under a running session: nothing to wait for
      return;
    }
    this.previewTimer = this.host.clock.setTimeout(() => {
      this.previewTimer = null;
      this.showPreview();
      this.host.changed();
    }, PREVIEW_HOLD_MS);
  }

  private clearPreviewTimer(): void {
    if (this.previewTimer !== null) this.host.clock.clearTimeout(this.previewTimer);
    this.previewTimer = null;
  }
}
