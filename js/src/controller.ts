// Runs the session core with real timers and wires it to the kernel (traitlets, custom
// messages), the signaling transport, the peer connection and the input source. One controller
// per widget model; every view of the widget shows it.

import { toBase64, toBytes, fromBase64, MAX_IMAGE_BYTES } from "./bytes";
import { ConnectionLost, DecartError, InvalidInput, KernelGone, MediaError, fromKind } from "./errors";
import { debug } from "./log";
import { encode, parseServer } from "./messages";
import { HeldPeerEvents, type Peer, type PeerEvents, type PeerFactory } from "./peer";
import { Session, type Action, type ConnectionState } from "./session";
import type { InputSource, SourceKind, SourceOpener, SourceOptions } from "./sources";
import { summarizeStats, type StatsSample } from "./stats";
import { DEFAULT_SPEC, type FrontendMessage, type KernelMessage, type WidgetModel, type WidgetTraits } from "./traits";
import { redactUrl, type Credential, type KernelChannel, type SignalingMode, type Transport } from "./transports";
import { saveAndReport } from "./sync";

export const TOKEN_TIMEOUT_MS = 15_000;
export const STATS_INTERVAL_MS = 1_000;

export interface ControllerDeps {
  /** monotonic seconds */
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  signalingModes: Record<string, SignalingMode>;
  createPeer: PeerFactory;
  openSource: SourceOpener;
  listCameras(): Promise<MediaDeviceInfo[]>;
}

interface TokenWaiter {
  resolve(credential: Credential): void;
  reject(error: DecartError): void;
  timer: unknown;
}

interface RequestInfo {
  request: "prompt" | "image";
  prompt: string | null;
}

const asError = (error: unknown): DecartError =>
  error instanceof DecartError ? error : new DecartError(error instanceof Error ? error.message : String(error));

// The browser's message may quote the URL: never let a credential reach a traitlet.
const unusableConnection = (error: unknown): DecartError =>
  new InvalidInput(`Cannot open the realtime connection: ${redactUrl(asError(error).message)}`);

/** A peer created ahead of the handshake, with what it was created from. */
interface WarmPeer {
  peer: Peer;
  events: HeldPeerEvents;
  started: Promise<void>;
  track: MediaStreamTrack | null;
  iceServers: string;
}

/** A token asked for while the camera opened is used only if the camera took less than this. */
export const PREFETCH_FRESH_SECONDS = 20;

/**
 * How long the input preview waits for the transformed output before it shows anyway. While a
 * session starts, the preview (a full-size video the page scales every frame) competes with the
 * handshake, the encoder and the decoder for the CPU: on a 2-core machine showing it at once
 * delayed the first transformed frame by ~25 ms (bench/ttff.py --baseline). Input and output then
 * appear together.
 */
export const PREVIEW_HOLD_MS = 1000;

/** How long a widget with no view left keeps its session (a view may be re-attached). */
export const ORPHAN_GRACE_MS = 2000;

export class Controller {
  readonly session: Session;
  /** the live input stream, shared by every view's preview */
  localStream: MediaStream | null = null;
  /** the transformed video from the service */
  remoteStream: MediaStream | null = null;
  /** true while the input source is being opened (before connecting) */
  starting = false;

  private readonly listeners = new Set<() => void>();
  private readonly modelHandlers: [string, () => void][] = [];
  private readonly customHandler: (message: unknown) => void;
  private source: InputSource | null = null;
  private sourceGeneration = 0;
  /** whether views show the input preview yet (see PREVIEW_HOLD_MS) */
  private previewShown = false;
  private previewTimer: unknown = null;
  private startGeneration = 0;
  private transport: Transport | null = null;
  private socketGeneration = 0;
  private peer: Peer | null = null;
  private peerGeneration = 0;
  /** a peer made ready while the socket opens, taken by the handshake's StartPeer */
  private warm: WarmPeer | null = null;
  private timer: unknown = null;
  private statsTimer: unknown = null;
  private statsSample: StatsSample | null = null;
  private readonly tokenWaiters = new Map<number, TokenWaiter>();
  private lastTokenId = 0;
  private readonly requests = new Map<number, RequestInfo>();
  private inputs: ((session: Session) => Action[])[] = [];
  private feeding = false;
  private readonly unsaved = new Set<keyof WidgetTraits>();
  private prefetched: { pending: Promise<Credential>; at: number } | null = null;
  private disposed = false;
  /** set when the kernel behind the widget is gone: the message to show on any further start */
  private kernelGone: string | null = null;
  private autostarted = false;
  private views = 0;
  private orphanTimer: unknown = null;
  private imageCache: { buffer: ArrayBufferLike; offset: number; length: number; base64: string } | null = null;
  private secondsBase = 0;
  private lastTick = 0;

  constructor(
    private readonly model: WidgetModel,
    private readonly deps: ControllerDeps,
  ) {
    this.session = new Session({
      prompt: model.get("prompt") ?? null,
      image: this.encodeImage(toBytes(model.get("image"))),
      enhance: model.get("enhance") ?? true,
    });
    this.onModel("change:prompt", () => this.applyPrompt());
    this.onModel("change:enhance", () => this.applyPrompt());
    this.onModel("change:image", () => this.applyImage());
    for (const name of ["source", "device_id", "mirror", "video", "model_spec"]) {
      this.onModel(`change:${name}`, () => void this.restartSource());
    }
    this.customHandler = (message) => this.onCustomMessage(message as KernelMessage);
    model.on("msg:custom", this.customHandler);
    if (this.session.state !== model.get("connection_state")) {
      this.set("connection_state", this.session.state);
      this.save();
    }
  }

  // ---- what views use ----------------------------------------------------------------------

  get state(): ConnectionState {
    return this.session.state;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * A view is shown; the returned function hides it. When the last view goes (the cell was
   * re-run or cleared) and none comes back within the grace period, the session stops and the
   * camera is released: nobody is watching.
   */
  attachView(): () => void {
    this.views++;
    if (this.orphanTimer !== null) {
      this.deps.clearTimeout(this.orphanTimer);
      this.orphanTimer = null;
    }
    let attached = true;
    return () => {
      if (!attached) return;
      attached = false;
      this.views--;
      if (this.views > 0 || this.disposed) return;
      this.orphanTimer = this.deps.setTimeout(() => {
        this.orphanTimer = null;
        if (this.views === 0 && !this.disposed) {
          this.stop();
          this.autostarted = false;
        }
      }, ORPHAN_GRACE_MS);
    };
  }

  /** Start once when the first view shows, if the widget asks for it. */
  autostart(): void {
    if (this.autostarted || !this.model.get("autostart")) return;
    this.autostarted = true;
    void this.start();
  }

  async start(): Promise<void> {
    if (this.kernelGone !== null) {
      this.showError(new KernelGone(this.kernelGone));
      this.notify();
      return;
    }
    if (this.disposed || this.starting || this.session.state !== "disconnected") return;
    const generation = ++this.startGeneration;
    this.clearError();
    this.secondsBase = this.lastTick = 0;
    this.set("generation_seconds", 0);
    if (!this.signalingMode()) {
      const signaling = this.model.get("signaling");
      this.showError(new InvalidInput(`signaling=${JSON.stringify(signaling)} is not supported by this front end.`));
      this.save();
      return;
    }
    this.starting = true;
    this.notify();
    this.save();
    this.prefetchCredential();
    try {
      await this.ensureSource();
    } catch (error) {
      if (generation === this.startGeneration) {
        this.starting = false;
        this.showError(asError(error));
        this.save();
        this.notify();
      }
      return;
    }
    if (generation !== this.startGeneration || this.disposed) return; // stopped meanwhile
    this.starting = false;
    this.notify();
    if (this.signalingMode()?.kernelSendsUpdates) {
      // the kernel sent the updates of the last session: start from the traitlets
      this.applyPrompt();
      this.applyImage();
    }
    this.feed((s) => s.start(this.deps.now()));
  }

  stop(): void {
    this.startGeneration++;
    this.prefetched = null;
    this.starting = false;
    this.feed((s) => s.stop(this.deps.now()));
    this.releaseSource();
    this.notify();
  }

  /** The input stream views show: held back until the output arrives or PREVIEW_HOLD_MS passed. */
  get previewStream(): MediaStream | null {
    return this.previewShown ? this.localStream : null;
  }

  listCameras(): Promise<MediaDeviceInfo[]> {
    return this.deps.listCameras();
  }

  dismissError(): void {
    this.clearError();
    this.save();
  }

  /**
   * The widget's kernel restarted, shut down or was replaced, or its notebook closed (host.ts): the
   * model stays in the page, but nothing in Python can see or stop this session any more. End it
   * and say so; the views stay, showing why. `kernelReachable`: the old kernel still hears this
   * comm (the notebook closed, its kernel runs on), so it is told the final state.
   */
  kernelLost(message: string, kernelReachable = false): void {
    if (this.disposed || this.kernelGone !== null) return;
    if (!kernelReachable) this.kernelGone = message;
    this.stop();
    this.showError(new KernelGone(message));
    this.save();
    this.kernelGone = message;
    this.notify();
  }

  /** The model is gone (w.close(), re-run cell) or the page unloads: release everything. */
  dispose(): void {
    if (this.disposed) return;
    this.stop();
    this.disposed = true;
    if (this.orphanTimer !== null) this.deps.clearTimeout(this.orphanTimer);
    this.clearPreviewTimer();
    this.clearTimer();
    this.stopStats();
    for (const [id, waiter] of this.tokenWaiters) {
      this.deps.clearTimeout(waiter.timer);
      this.tokenWaiters.delete(id);
    }
    for (const [event, handler] of this.modelHandlers) this.model.off(event, handler);
    this.model.off("msg:custom", this.customHandler);
    this.listeners.clear();
  }

  // ---- the core's loop -----------------------------------------------------------------------

  /** Run one input through the core and carry out its actions (inputs raised meanwhile queue up). */
  private feed(input: (session: Session) => Action[]): void {
    this.inputs.push(input);
    if (this.feeding) return;
    this.feeding = true;
    try {
      while (this.inputs.length) {
        const next = this.inputs.shift()!;
        for (const action of next(this.session)) {
          try {
            this.execute(action);
          } catch (error) {
            debug("action failed", action.kind, error);
          }
        }
      }
    } finally {
      this.feeding = false;
    }
    this.scheduleTimer();
    this.save();
  }

  private execute(action: Action): void {
    switch (action.kind) {
      case "OpenSocket":
        this.connect(action.attempt);
        break;
      case "CloseSocket":
        this.socketGeneration++;
        this.transport?.close(action.code, action.reason);
        this.transport = null;
        break;
      case "Send":
        this.transport?.send(encode(action.message));
        break;
      case "StartPeer":
        this.startPeer();
        break;
      case "ClosePeer":
        this.closePeer();
        this.discardWarm();
        break;
      case "ApplyAnswer":
        this.peer?.applyAnswer(action.sdp).catch((error) => this.peerFailed(error));
        break;
      case "AddRemoteCandidate":
        void this.peer?.addRemoteCandidate(action.candidate);
        break;
      case "RestartIce":
        this.peer?.restartIce(action.turnConfig).catch((error) => this.peerFailed(error));
        break;
      case "StateChanged":
        this.set("connection_state", action.state);
        if (action.state === "disconnected") this.releaseSource();
        this.notify();
        break;
      case "Resolve":
        this.settled(action.requestId, action.superseded ? null : true, null);
        break;
      case "Reject":
        this.settled(action.requestId, false, action.error);
        break;
      case "Emit":
        if (action.name === "generation_tick") this.tick(action.value);
        else if (action.name === "session_id") this.set("session_id", action.value);
        else if (action.name === "error") this.showError(action.value);
        else debug("generation ended:", action.value);
        break;
    }
  }

  private scheduleTimer(): void {
    this.clearTimer();
    const deadline = this.session.nextDeadline();
    if (deadline === null || this.disposed) return;
    const delayMs = Math.max(0, (deadline - this.deps.now()) * 1000);
    this.timer = this.deps.setTimeout(() => {
      this.timer = null;
      this.feed((s) => s.onTimer(this.deps.now()));
    }, delayMs);
  }

  private clearTimer(): void {
    if (this.timer !== null) this.deps.clearTimeout(this.timer);
    this.timer = null;
  }

  // ---- prompt and image ------------------------------------------------------------------------

  /** Kernel signaling with a session open: the kernel sends prompt/image updates itself. */
  private kernelSendsUpdates(): boolean {
    return Boolean(this.signalingMode()?.kernelSendsUpdates) && this.session.state !== "disconnected";
  }

  private applyPrompt(): void {
    if (this.kernelSendsUpdates()) return;
    const text = this.model.get("prompt") || null;
    const enhance = this.model.get("enhance") ?? true;
    const desired = this.session.desired;
    if (text === desired.prompt && enhance === desired.enhance) return;
    this.feed((s) => {
      const { requestId, actions } = s.setPrompt(this.deps.now(), text, enhance);
      this.requests.set(requestId, { request: "prompt", prompt: text });
      return actions;
    });
  }

  private applyImage(): void {
    const bytes = toBytes(this.model.get("image"));
    if (bytes && bytes.byteLength > MAX_IMAGE_BYTES) {
      const megabytes = (bytes.byteLength / 1024 / 1024).toFixed(1);
      this.showError(new InvalidInput(`The image is ${megabytes} MB; the limit is 10 MB. Use a smaller image.`));
      this.set("image", this.imageValue(this.session.desired.image));
      this.save();
      return;
    }
    if (this.kernelSendsUpdates()) return;
    const image = this.encodeImage(bytes);
    if (image === this.session.desired.image) return;
    this.feed((s) => {
      const { requestId, actions } = s.setImage(this.deps.now(), image);
      this.requests.set(requestId, { request: "image", prompt: s.desired.prompt });
      return actions;
    });
  }

  /** Bring `prompt`/`image` back to the session's desired state (after a rejection). */
  private revertTraitlets(): void {
    const { prompt, image, enhance } = this.session.desired;
    if ((this.model.get("prompt") || null) !== prompt) this.set("prompt", prompt ?? "");
    if (this.model.get("enhance") !== enhance) this.set("enhance", enhance);
    if (this.encodeImage(toBytes(this.model.get("image"))) !== image) this.set("image", this.imageValue(image));
  }

  /** Raw base64 of an image traitlet value; remembers the last one (images can be megabytes). */
  private encodeImage(bytes: Uint8Array | null): string | null {
    if (!bytes?.byteLength) return null;
    const cache = this.imageCache;
    if (cache && cache.buffer === bytes.buffer && cache.offset === bytes.byteOffset && cache.length === bytes.byteLength) {
      return cache.base64;
    }
    const base64 = toBase64(bytes);
    this.imageCache = { buffer: bytes.buffer, offset: bytes.byteOffset, length: bytes.byteLength, base64 };
    return base64;
  }

  private imageValue(base64: string | null): DataView | null {
    if (base64 === null) return null;
    const view = new DataView(fromBase64(base64).buffer);
    this.imageCache = { buffer: view.buffer, offset: 0, length: view.byteLength, base64 };
    return view;
  }

  /** success: true, false, or null for a superseded request (never sent). */
  private settled(requestId: number, success: boolean | null, error: DecartError | null): void {
    const info = this.requests.get(requestId);
    this.requests.delete(requestId);
    if (error && !(error instanceof ConnectionLost)) {
      // ConnectionLost is the session ending: its own error says so once.
      this.showError(error);
      if (error.kind === "moderation") this.revertTraitlets();
    }
    if (!info || success === null || this.session.state === "disconnected") return;
    this.sendToKernel({
      type: "ack",
      request: info.request,
      success,
      error: error ? error.message : null,
      prompt: info.prompt,
    });
  }

  private tick(seconds: number): void {
    // each (re)connect is a new server session counting from zero: keep the total
    if (seconds < this.lastTick) this.secondsBase += this.lastTick;
    this.lastTick = seconds;
    this.set("generation_seconds", this.secondsBase + seconds);
  }

  // ---- signaling ---------------------------------------------------------------------------------

  private signalingMode(): SignalingMode | undefined {
    return this.deps.signalingModes[this.model.get("signaling") || "direct"];
  }

  private connect(attempt: number): void {
    const generation = ++this.socketGeneration;
    const current = (): boolean => generation === this.socketGeneration && !this.disposed;
    const mode = this.signalingMode();
    if (!mode) {
      this.feed((s) => s.socketClosed(this.deps.now(), null, "no transport"));
      return;
    }
    debug("connecting, attempt", attempt);
    const credential = mode.needsCredential
      ? (this.takePrefetched() ?? this.requestCredential())
      : Promise.resolve(null);
    credential.then(
      (value) => {
        if (!current()) return;
        let transport: Transport;
        try {
          transport = mode.connect({
            model: this.model.get("model") || this.spec().name,
            realtimeUrl: this.model.get("realtime_url"),
            credential: value,
            kernel: this.kernelChannel(),
          });
        } catch (error) {
          // e.g. a malformed realtime_url: retrying the same URL cannot help
          this.fail(unusableConnection(error));
          return;
        }
        this.transport = transport;
        transport.onopen = () => {
          if (current()) this.feed((s) => s.socketOpened(this.deps.now()));
        };
        transport.onmessage = (frame) => {
          if (current()) this.receive(frame);
        };
        transport.onclose = (code, reason) => {
          if (!current()) return;
          this.transport = null;
          this.feed((s) => s.socketClosed(this.deps.now(), code, reason));
        };
        try {
          transport.open();
        } catch (error) {
          this.fail(unusableConnection(error));
          return;
        }
        this.warmUp(); // after the socket starts connecting: it must not wait for the peer
      },
      (error: DecartError) => {
        if (!current()) return;
        if (error.permanent) {
          this.fail(error);
        } else {
          this.feed((s) => s.socketClosed(this.deps.now(), null, error.message));
        }
      },
    );
  }

  private receive(frame: string): void {
    let message;
    try {
      message = parseServer(frame);
    } catch (error) {
      debug("ignoring a malformed frame:", (error as Error).message);
      return;
    }
    if (message) this.feed((s) => s.message(this.deps.now(), message));
  }

  /**
   * Ask for the first connect's token while the camera opens, so the socket opens as soon as the
   * source is ready. Used only while fresh: a user may take long to grant the camera.
   */
  private prefetchCredential(): void {
    this.prefetched = null;
    if (!this.signalingMode()?.needsCredential) return;
    const pending = this.requestCredential();
    pending.catch(() => undefined); // a failure surfaces when the connect takes it
    this.prefetched = { pending, at: this.deps.now() };
  }

  private takePrefetched(): Promise<Credential> | null {
    const prefetched = this.prefetched;
    this.prefetched = null;
    if (!prefetched || this.deps.now() - prefetched.at > PREFETCH_FRESH_SECONDS) return null;
    return prefetched.pending;
  }

  private requestCredential(): Promise<Credential> {
    const id = ++this.lastTokenId;
    return new Promise((resolve, reject) => {
      const timer = this.deps.setTimeout(() => {
        this.tokenWaiters.delete(id);
        reject(new ConnectionLost("The kernel did not answer the token request: is the kernel still running?"));
      }, TOKEN_TIMEOUT_MS);
      this.tokenWaiters.set(id, { resolve, reject, timer });
      this.sendToKernel({ type: "token_request", id });
    });
  }

  private onCustomMessage(message: KernelMessage): void {
    if (!message || typeof message !== "object") return;
    switch (message.type) {
      case "start":
        void this.start();
        break;
      case "stop":
        this.stop();
        break;
      case "token":
      case "token_error": {
        const waiter = this.tokenWaiters.get(message.id);
        if (!waiter) return;
        this.tokenWaiters.delete(message.id);
        this.deps.clearTimeout(waiter.timer);
        if (message.type === "token") {
          const credential: Credential = { apiKey: message.api_key };
          if (message.realtime_url) credential.realtimeUrl = message.realtime_url;
          waiter.resolve(credential);
        } else {
          waiter.reject(fromKind(message.kind ?? "error", message.message || "The kernel could not mint a token."));
        }
        break;
      }
    }
  }

  // ---- peer --------------------------------------------------------------------------------------

  private startPeer(): void {
    this.closePeer();
    const generation = ++this.peerGeneration;
    const current = (): boolean => generation === this.peerGeneration && !this.disposed;
    const events: PeerEvents = {
      offer: (sdp) => current() && this.feed((s) => s.localOffer(this.deps.now(), sdp)),
      candidate: (candidate) => current() && this.feed((s) => s.localCandidate(this.deps.now(), candidate)),
      state: (state) => current() && this.feed((s) => s.peerState(this.deps.now(), state)),
      remoteStream: (stream) => {
        if (!current()) return;
        this.remoteStream = stream;
        this.showPreview();
        this.notify();
      },
    };
    const warm = this.takeWarm();
    const track = this.source?.track ?? null;
    let started: Promise<void>;
    if (warm) {
      this.peer = warm.peer;
      started = warm.started;
      if (warm.track !== track) void warm.peer.replaceTrack(track); // the source changed meanwhile
      warm.events.release(events);
    } else {
      this.peer = this.deps.createPeer(this.iceServers(), events);
      started = this.peer.start(track);
    }
    started.catch((error) => {
      if (current()) this.peerFailed(error);
    });
    this.startStats(generation);
  }

  /**
   * Create the peer connection and its offer while the socket connects and the initial state is
   * acknowledged: a browser takes tens of milliseconds to set up its first RTCPeerConnection, and
   * the handshake would otherwise wait for it after the ack. Its events are held until StartPeer.
   */
  private warmUp(): void {
    if (this.warm || this.peer || this.disposed) return;
    const events = new HeldPeerEvents();
    const iceServers = this.iceServers();
    const peer = this.deps.createPeer(iceServers, events);
    const track = this.source?.track ?? null;
    const started = peer.start(track);
    started.catch(() => undefined); // reported when the handshake takes the peer
    this.warm = { peer, events, started, track, iceServers: JSON.stringify(iceServers) };
  }

  /** The warm peer, if it still fits the widget's settings. */
  private takeWarm(): WarmPeer | null {
    const warm = this.warm;
    this.warm = null;
    if (warm && warm.iceServers !== JSON.stringify(this.iceServers())) {
      warm.peer.close();
      return null;
    }
    return warm;
  }

  private discardWarm(): void {
    this.warm?.peer.close();
    this.warm = null;
  }

  private iceServers(): RTCIceServer[] {
    return this.model.get("ice_servers") ?? [];
  }

  private peerFailed(error: unknown): void {
    debug("peer connection step failed:", error);
    if (this.peer) this.feed((s) => s.peerState(this.deps.now(), "failed"));
  }

  private closePeer(): void {
    this.peerGeneration++;
    this.stopStats();
    const peer = this.peer;
    this.peer = null;
    peer?.close();
    if (this.remoteStream) {
      this.remoteStream = null;
      this.notify();
    }
  }

  private startStats(generation: number): void {
    this.statsSample = null;
    const poll = async (): Promise<void> => {
      const report = await this.peer?.getStats();
      if (!report || generation !== this.peerGeneration) return;
      const { stats, sample } = summarizeStats(report.values() as Iterable<never>, this.deps.now() * 1000, this.statsSample);
      this.statsSample = sample;
      this.set("stats", stats);
      this.save();
    };
    const loop = (): void => {
      this.statsTimer = this.deps.setTimeout(() => {
        poll().catch((error) => debug("getStats failed:", error)).finally(() => {
          if (generation === this.peerGeneration && !this.disposed) loop();
        });
      }, STATS_INTERVAL_MS);
    };
    loop();
  }

  private stopStats(): void {
    if (this.statsTimer !== null) this.deps.clearTimeout(this.statsTimer);
    this.statsTimer = null;
    this.statsSample = null;
    if (Object.keys(this.model.get("stats") ?? {}).length) this.set("stats", {});
  }

  // ---- input source ------------------------------------------------------------------------------

  private spec(): { name: string; width: number; height: number; fps: number } {
    return { ...DEFAULT_SPEC, ...(this.model.get("model_spec") ?? {}) };
  }

  private sourceOptions(): SourceOptions {
    const { width, height, fps } = this.spec();
    return {
      width,
      height,
      fps,
      deviceId: this.model.get("device_id") ?? "",
      mirror: Boolean(this.model.get("mirror")),
      video: toBytes(this.model.get("video")),
    };
  }

  private async ensureSource(): Promise<InputSource> {
    if (this.source) return this.source;
    const generation = ++this.sourceGeneration;
    const kind: SourceKind = this.model.get("source") || "camera";
    const source = await this.deps.openSource(kind, this.sourceOptions());
    if (generation !== this.sourceGeneration || this.disposed) {
      source.stop(); // released while opening
      throw new ConnectionLost("stopped");
    }
    this.source = source;
    this.localStream = source.stream;
    this.holdPreview();
    source.track.addEventListener?.("ended", () => this.sourceEnded(source, kind));
    this.notify();
    return source;
  }

  private sourceEnded(source: InputSource, kind: SourceKind): void {
    if (source !== this.source) return;
    if (kind !== "screen") {
      this.showError(new MediaError("camera", "The camera stopped (unplugged or taken by another application): press Start again."));
    }
    this.stop();
  }

  /** Source settings changed: swap the track under a running session. */
  private async restartSource(): Promise<void> {
    if (!this.source) return;
    this.releaseSource(true);
    try {
      const source = await this.ensureSource();
      await this.peer?.replaceTrack(source.track);
    } catch (error) {
      if (error instanceof ConnectionLost) return;
      this.showError(asError(error));
      this.stop();
    }
  }

  private holdPreview(): void {
    this.clearPreviewTimer();
    if (this.previewShown || this.remoteStream) {
      this.previewShown = true; // a new track under a running session: nothing to wait for
      return;
    }
    this.previewTimer = this.deps.setTimeout(() => {
      this.previewTimer = null;
      this.showPreview();
      this.notify();
    }, PREVIEW_HOLD_MS);
  }

  private showPreview(): void {
    this.clearPreviewTimer();
    this.previewShown = true;
  }

  private clearPreviewTimer(): void {
    if (this.previewTimer !== null) this.deps.clearTimeout(this.previewTimer);
    this.previewTimer = null;
  }

  private releaseSource(keepPreview = false): void {
    this.discardWarm(); // made with this source's track
    this.clearPreviewTimer();
    this.previewShown &&= keepPreview;
    this.sourceGeneration++;
    const source = this.source;
    this.source = null;
    this.localStream = null;
    if (source) {
      source.stop();
      this.notify();
    }
  }

  // ---- model plumbing ----------------------------------------------------------------------------

  private onModel(event: string, handler: () => void): void {
    this.model.on(event, handler);
    this.modelHandlers.push([event, handler]);
  }

  private set<K extends keyof WidgetTraits>(key: K, value: WidgetTraits[K]): void {
    if (this.disposed) return;
    this.model.set(key, value);
    this.unsaved.add(key);
  }

  private save(): void {
    // once the kernel is gone, the state stays in the page: the new kernel does not know the comm
    if (!this.unsaved.size || this.disposed || this.kernelGone !== null) return;
    const keys = [...this.unsaved];
    this.unsaved.clear();
    try {
      saveAndReport(this.model, keys);
    } catch (error) {
      debug("saving failed:", error);
    }
  }

  private kernelChannel(): KernelChannel {
    return {
      send: (content, buffers) => {
        if (this.disposed) return;
        this.model.send(content, undefined, buffers);
      },
      listen: (handler) => {
        const listener = (content: unknown, buffers: unknown): void =>
          handler(content, Array.isArray(buffers) ? buffers : []);
        this.model.on("msg:custom", listener);
        return () => this.model.off("msg:custom", listener);
      },
    };
  }

  private sendToKernel(message: FrontendMessage): void {
    if (this.disposed || this.kernelGone !== null) return;
    try {
      this.model.send(message);
    } catch (error) {
      debug("send failed:", error);
    }
  }

  /** End the session for a reason the core cannot see (token refused, unusable URL). */
  private fail(error: DecartError): void {
    this.feed((s) => s.stop(this.deps.now()));
    this.showError(error);
    this.save();
  }

  private showError(error: DecartError): void {
    this.set("last_error", error.message);
    this.set("last_error_kind", error.kind);
  }

  private clearError(): void {
    if (this.model.get("last_error") || this.model.get("last_error_kind")) {
      this.set("last_error", "");
      this.set("last_error_kind", "");
    }
  }

  private notify(): void {
    for (const listener of this.listeners) {
      try {
        listener();
      } catch (error) {
        debug("a view listener failed:", error);
      }
    }
  }
}
