// The widget model <-> the session core: traitlet changes become the core's inputs (prompt,
// enhance, image), and what the core decides comes back as traitlets (connection_state,
// generation_seconds, session_id, errors, stats) and as acks to the kernel. The only module that
// reads or writes the model's traitlets for the controller.

import { MEDIA_TRANSPORTS, type MediaTransportName } from "./constants";
import { fromBase64, MAX_IMAGE_BYTES, toBase64, toBytes } from "./bytes";
import type { Input } from "./core_loop";
import { ConnectionLost, type DecartError, InvalidInput } from "./errors";
import type { KernelComm } from "./kernel_comm";
import { debug } from "./log";
import type { ConnectionState, MediaState, QueueStatus, Session } from "./session";
import type { SourceKind, SourceOptions } from "./sources";
import type { Stats } from "./stats";
import { type KernelOwned, requestSet, saveAndReport } from "./sync";
import { DEFAULT_SPEC, type ModelSpec, type WidgetModel, type WidgetTraits } from "./traits";
import type { MediaTransport } from "./media";
import type { SignalingMode } from "./transports";

/** The core as the bridge drives it. */
export interface Core {
  readonly session: Session;
  feed(input: Input): void;
}

interface RequestInfo {
  request: "prompt" | "image";
  prompt: string | null;
}

const KERNEL_OWNED: readonly string[] = ["prompt", "enhance", "image"] satisfies KernelOwned[];

/** Raw base64 of image traitlet values; remembers the last one (images can be megabytes). */
export class ImageCodec {
  private cache: { buffer: ArrayBufferLike; offset: number; length: number; base64: string } | null = null;

  encode(bytes: Uint8Array | null): string | null {
    if (!bytes?.byteLength) return null;
    const cache = this.cache;
    if (cache && cache.buffer === bytes.buffer && cache.offset === bytes.byteOffset && cache.length === bytes.byteLength) {
      return cache.base64;
    }
    const base64 = toBase64(bytes);
    this.cache = { buffer: bytes.buffer, offset: bytes.byteOffset, length: bytes.byteLength, base64 };
    return base64;
  }

  decode(base64: string | null): DataView | null {
    if (base64 === null) return null;
    const view = new DataView(fromBase64(base64).buffer);
    this.cache = { buffer: view.buffer, offset: 0, length: view.byteLength, base64 };
    return view;
  }
}

export class ModelBridge {
  private readonly unsaved = new Set<keyof WidgetTraits>();
  private readonly requests = new Map<number, RequestInfo>();
  private readonly handlers: [string, () => void][] = [];
  private readonly images = new ImageCodec();
  private closed = false;
  private core: Core | null = null;

  constructor(
    private readonly model: WidgetModel,
    private readonly comm: KernelComm,
    private readonly signalingModes: Record<string, SignalingMode>,
    private readonly mediaTransports: Record<string, MediaTransport>,
  ) {}

  /** The state a session starts from: the traitlets now. */
  initialState(): MediaState {
    return {
      prompt: this.model.get("prompt") ?? null,
      image: this.images.encode(toBytes(this.model.get("image"))),
      enhance: this.model.get("enhance") ?? true,
    };
  }

  /** Feed `core` from the traitlets from now on; publish its state if the model shows another. */
  bind(core: Core): void {
    this.core = core;
    this.on("change:prompt", () => this.applyPrompt());
    this.on("change:enhance", () => this.applyPrompt());
    this.on("change:image", () => this.applyImage());
    if (core.session.state !== this.model.get("connection_state")) {
      this.set("connection_state", core.session.state);
      this.save();
    }
  }

  /** Call `handler` when the model's `event` fires, until dispose. */
  on(event: string, handler: () => void): void {
    this.model.on(event, handler);
    this.handlers.push([event, handler]);
  }

  // ---- what the connection is made of ------------------------------------------------------------

  /** The widget's signaling mode; undefined for one this front end does not know. */
  signaling(): SignalingMode | undefined {
    return this.signalingModes[this.model.get("signaling") || "direct"];
  }

  /** The `signaling` traitlet as given, for a message about it. */
  signalingName(): string {
    return this.model.get("signaling");
  }

  /** The widget's media transport; undefined for one this front end does not know. */
  media(): MediaTransport | undefined {
    return this.mediaTransports[this.model.get("transport") || "webrtc"];
  }

  /** The media transport the core speaks (a name this front end lacks: start() says so). */
  transportChoice(): MediaTransportName {
    const name = this.model.get("transport");
    return (MEDIA_TRANSPORTS as readonly string[]).includes(name) ? (name as MediaTransportName) : "webrtc";
  }

  /** The `transport` traitlet as given, for a message about it. */
  transportName(): string {
    return this.model.get("transport");
  }

  target(): { model: string; realtimeUrl: string; resolution: string | null; remoteHelp: string } {
    return {
      model: this.model.get("model") || this.spec().name,
      realtimeUrl: this.model.get("realtime_url"),
      resolution: this.model.get("resolution") || null,
      // what a page on another host is told about a service beside the kernel (reach.ts)
      remoteHelp: this.model.get("remote_page_help") || "",
    };
  }

  iceServers(): RTCIceServer[] {
    return this.model.get("ice_servers") ?? [];
  }

  source(): { kind: SourceKind; options: SourceOptions } {
    const { width, height, fps } = this.spec();
    return {
      kind: this.model.get("source") || "camera",
      options: {
        width,
        height,
        fps,
        deviceId: this.model.get("device_id") ?? "",
        camera: this.model.get("camera") ?? {},
        mirror: Boolean(this.model.get("mirror")),
        video: toBytes(this.model.get("video")),
      },
    };
  }

  autostart(): boolean {
    return Boolean(this.model.get("autostart"));
  }

  // ---- edits from a view ---------------------------------------------------------------------------

  /**
   * A view changes a traitlet. Where the kernel sends prompt/enhance/image to the service itself
   * (its signaling mode says so), the kernel is asked to set them and the model follows its update
   * (sync.ts): returns true then, so the view shows the value it asked for meanwhile.
   */
  edit<K extends keyof WidgetTraits>(key: K, value: WidgetTraits[K]): boolean {
    if (this.signaling()?.kernelSendsUpdates && KERNEL_OWNED.includes(key)) {
      requestSet(this.model, { [key]: value });
      return true;
    }
    this.model.set(key, value);
    saveAndReport(this.model, [key]);
    return false;
  }

  // ---- prompt and image --------------------------------------------------------------------------

  /** Send the prompt traitlets to the core, unless the kernel sends them (see kernelSendsUpdates). */
  applyPrompt(): void {
    const core = this.core;
    if (!core || this.kernelSendsUpdates()) return;
    // the traitlet's "" or blank means no prompt (the core rejects a blank prompt text)
    const raw = this.model.get("prompt");
    const text = raw && raw.trim() ? raw : null;
    const enhance = this.model.get("enhance") ?? true;
    const desired = core.session.desired;
    if (text === desired.prompt && enhance === desired.enhance) return;
    core.feed((s, now) => {
      const { requestId, actions } = s.setPrompt(now, text, enhance);
      this.requests.set(requestId, { request: "prompt", prompt: text });
      return actions;
    });
  }

  applyImage(): void {
    const core = this.core;
    if (!core) return;
    const bytes = toBytes(this.model.get("image"));
    if (bytes && bytes.byteLength > MAX_IMAGE_BYTES) {
      const megabytes = (bytes.byteLength / 1024 / 1024).toFixed(1);
      this.showError(new InvalidInput(`The image is ${megabytes} MB; the limit is ${MAX_IMAGE_BYTES / 1024 / 1024} MB. Use a smaller image.`));
      this.set("image", this.images.decode(core.session.desired.image));
      this.save();
      return;
    }
    if (this.kernelSendsUpdates()) return;
    const image = this.images.encode(bytes);
    if (image === core.session.desired.image) return;
    core.feed((s, now) => {
      const { requestId, actions } = s.setImage(now, image);
      this.requests.set(requestId, { request: "image", prompt: s.desired.prompt });
      return actions;
    });
  }

  /** The core's Resolve/Fail. success: true, false, or null for a superseded request (never sent). */
  settled(requestId: number, success: boolean | null, error: DecartError | null): void {
    const info = this.requests.get(requestId);
    this.requests.delete(requestId);
    if (error && !(error instanceof ConnectionLost)) {
      // ConnectionLost is the session ending: its own error says so once.
      this.showError(error);
      if (error.kind === "moderation") this.revert();
    }
    if (!info || success === null || this.core?.session.state === "disconnected") return;
    this.comm.send({
      type: "ack",
      request: info.request,
      success,
      error: error ? error.message : null,
      prompt: info.prompt,
    });
  }

  // ---- what the core reports -----------------------------------------------------------------------

  state(state: ConnectionState): void {
    this.set("connection_state", state);
  }

  sessionId(id: string): void {
    this.set("session_id", id);
  }

  /** The place in the service's queue; null: not (or no longer) queued. */
  queue(place: QueueStatus | null): void {
    this.set("queue_position", place?.position ?? null);
    this.set("queue_size", place?.size ?? null);
  }

  /** A new session: usage counts from zero. */
  resetSeconds(): void {
    this.set("generation_seconds", 0);
  }

  /** The core's generation_tick: the seconds since start, already summed over reconnects. */
  tick(seconds: number): void {
    this.set("generation_seconds", seconds);
  }

  /** A stats sample (saved at once: it arrives outside the core's loop); null clears them. */
  stats(stats: Stats | null): void {
    if (stats) {
      this.set("stats", stats);
      this.save();
    } else if (Object.keys(this.model.get("stats") ?? {}).length) {
      this.set("stats", {});
    }
  }

  showError(error: DecartError): void {
    this.set("last_error", error.message);
    this.set("last_error_kind", error.kind);
  }

  clearError(): void {
    if (this.model.get("last_error") || this.model.get("last_error_kind")) {
      this.set("last_error", "");
      this.set("last_error_kind", "");
    }
  }

  /** Save what changed since the last save, and report it to the kernel (sync.ts). */
  save(): void {
    // once the kernel is gone, the state stays in the page: the new kernel does not know the comm
    if (!this.unsaved.size || this.closed || this.comm.gone !== null) return;
    const keys = [...this.unsaved];
    this.unsaved.clear();
    try {
      saveAndReport(this.model, keys);
    } catch (error) {
      debug("saving failed:", error);
    }
  }

  /** The widget is gone: no more writes, no more listening. */
  dispose(): void {
    this.closed = true;
    for (const [event, handler] of this.handlers) this.model.off(event, handler);
    this.handlers.length = 0;
  }

  private set<K extends keyof WidgetTraits>(key: K, value: WidgetTraits[K]): void {
    if (this.closed) return;
    this.model.set(key, value);
    this.unsaved.add(key);
  }

  /** Kernel signaling with a session open: the kernel sends prompt/image updates itself. */
  private kernelSendsUpdates(): boolean {
    return Boolean(this.signaling()?.kernelSendsUpdates) && this.core?.session.state !== "disconnected";
  }

  /** Bring `prompt`/`image` back to the session's desired state (after a rejection). */
  private revert(): void {
    if (!this.core) return;
    const { prompt, image, enhance } = this.core.session.desired;
    if ((this.model.get("prompt") || null) !== prompt) this.set("prompt", prompt ?? "");
    if (this.model.get("enhance") !== enhance) this.set("enhance", enhance);
    if (this.images.encode(toBytes(this.model.get("image"))) !== image) this.set("image", this.images.decode(image));
  }

  private spec(): ModelSpec {
    return { ...DEFAULT_SPEC, ...(this.model.get("model_spec") ?? {}) };
  }
}
