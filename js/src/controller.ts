// The composition root of one widget model: it makes the parts and wires them together, and runs
// the widget's lifecycle (start, stop, views coming and going, the kernel going away). Every view
// of the widget shows this one controller.
//
//   core_loop.ts       the session core with real timers; its actions are routed below
//   signaling_link.ts  the connection to the service, through the widget's signaling mode
//   media.ts           the media transport (peer_link.ts: WebRTC; livekit_link.ts: LiveKit),
//                      the second, independent axis; asset_loader.ts loads LiveKit on demand
//   source_manager.ts  the camera/screen/video/synthetic source and the preview hold
//   model_bridge.ts    traitlets <-> the core
//   kernel_comm.ts     the widget comm; kernel_rpc.ts the token requests over it
//   frame_capture.ts   frames for the kernel (w.snapshot())

import { CoreLoop, type Clock, type Input } from "./core_loop";
import { AssetLoader } from "./asset_loader";
import type { FramesFactory } from "./lazy_frames";
import { asError, ConnectionLost, type DecartError, InvalidInput, KernelGone, MediaError } from "./errors";
import { KernelComm } from "./kernel_comm";
import { TokenRequests } from "./kernel_rpc";
import { debug } from "./log";
import { isMediaAction, type MediaLink, type MediaTransport, NO_MEDIA } from "./media";
import { ModelBridge } from "./model_bridge";
import { currentPageHost, explainMediaFailure, fillWildcardHost } from "./reach";
import { Session, type Action, type ConnectionState } from "./session";
import { SignalingLink } from "./signaling_link";
import { SourceManager } from "./source_manager";
import type { SourceKind, SourceOpener } from "./sources";
import type { WidgetModel, WidgetTraits } from "./traits";
import type { SignalingMode } from "./transports";

export interface ControllerDeps extends Clock {
  /** the signaling modes this front end knows, by the `signaling` traitlet's value */
  signalingModes: Record<string, SignalingMode>;
  /** how media reaches the service, by the `transport` traitlet's value (webrtcMedia, livekitMedia) */
  media: Record<string, MediaTransport>;
  openSource: SourceOpener;
  listCameras(): Promise<MediaDeviceInfo[]>;
  /** the frame capture for w.snapshot() (lazyFrames: frame_capture.ts, loaded on demand) */
  frames: FramesFactory;
  /** the page's host name as the browser sees it (reach.ts; default: location.hostname) */
  pageHost?: () => string;
}

/** How long a widget with no view left keeps its session (a view may be re-attached). */
export const ORPHAN_GRACE_MS = 2000;

/** Traitlets whose change means another input source. */
const SOURCE_TRAITS = ["source", "device_id", "camera", "mirror", "video", "model_spec"] as const;

export class Controller {
  /** true while the input source is being opened (before connecting) */
  starting = false;

  private readonly listeners = new Set<() => void>();
  private readonly comm: KernelComm;
  private readonly bridge: ModelBridge;
  private readonly loop: CoreLoop;
  private readonly tokens: TokenRequests;
  private readonly sources: SourceManager;
  private readonly media: MediaLink;
  private readonly signaling: SignalingLink;
  private readonly frames: { dispose(): void };
  /** the current start's life: aborted by stop() */
  private attempt: AbortController | null = null;
  private disposed = false;
  private autostarted = false;
  private views = 0;
  private orphanTimer: unknown = null;

  constructor(
    model: WidgetModel,
    private readonly deps: ControllerDeps,
  ) {
    this.comm = new KernelComm(model);
    this.bridge = new ModelBridge(model, this.comm, deps.signalingModes, deps.media);
    this.loop = new CoreLoop(
      new Session({ ...this.bridge.initialState(), transport: this.bridge.transportChoice() }),
      deps,
      (action) => this.execute(action),
      () => this.bridge.save(),
    );
    this.tokens = new TokenRequests(this.comm, deps);
    const toCore = (input: Input): void => this.loop.feed(input);
    this.sources = new SourceManager({
      clock: deps,
      // the screen, video-file and Python sources are an asset of their own (capture_sources.ts)
      open: (kind, options) => deps.openSource(kind, options, (name) => assets.load(name), this.comm.channel()),
      settings: () => this.bridge.source(),
      hasOutput: () => this.media.remoteStream !== null,
      changed: () => this.notify(),
      ended: (kind) => this.sourceEnded(kind),
    });
    const assets = new AssetLoader(this.comm.channel(), deps);
    // the transport is fixed for the widget's life; start() reports one this build lacks
    this.media = (this.bridge.media() ?? NO_MEDIA).open({
      clock: deps,
      toCore,
      track: () => this.sources.track,
      iceServers: () => this.bridge.iceServers(),
      remoteStream: (stream) => {
        if (stream) this.sources.showPreview();
        this.notify();
      },
      stats: (stats) => this.bridge.stats(stats),
      loadAsset: (name) => assets.load(name),
      warmAsset: (name) => assets.warm(name),
      fail: (error) => this.fail(error),
    });
    this.signaling = new SignalingLink({
      clock: deps,
      toCore,
      mode: () => this.bridge.signaling(),
      target: () => this.bridge.target(),
      requestCredential: () => this.tokens.request(),
      kernel: this.comm.channel(),
      fail: (error) => this.fail(error),
      connecting: () => this.media.prepare(),
    });
    this.frames = deps.frames({
      clock: deps,
      kernel: this.comm.channel(),
      stream: (which) => (which === "input" ? this.sources.localStream : this.media.remoteStream),
      active: () => this.starting || this.state !== "disconnected",
      shown: () => this.views > 0,
      subscribe: (listener) => this.subscribe(listener),
      loadAsset: (name) => assets.load(name),
    });
    this.bridge.bind(this.loop);
    for (const name of SOURCE_TRAITS) this.bridge.on(`change:${name}`, () => void this.restartSource());
    this.comm.listen((message) => {
      if (message.type === "start") void this.start();
      else if (message.type === "stop") this.stop();
    });
  }

  // ---- what views use ----------------------------------------------------------------------

  get session(): Session {
    return this.loop.session;
  }

  get state(): ConnectionState {
    return this.loop.session.state;
  }

  /** the live input stream */
  get localStream(): MediaStream | null {
    return this.sources.localStream;
  }

  /** The input stream views show: held back until the output arrives or PREVIEW_HOLD_MS passed. */
  get previewStream(): MediaStream | null {
    return this.sources.previewStream;
  }

  /** the transformed video from the service */
  get remoteStream(): MediaStream | null {
    return this.media.remoteStream;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A view changes a traitlet; true: the kernel was asked to set it (model_bridge.ts). */
  edit<K extends keyof WidgetTraits>(key: K, value: WidgetTraits[K]): boolean {
    return this.bridge.edit(key, value);
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
    if (this.autostarted || !this.bridge.autostart()) return;
    this.autostarted = true;
    void this.start();
  }

  async start(): Promise<void> {
    if (this.comm.gone !== null) {
      this.bridge.showError(new KernelGone(this.comm.gone));
      this.notify();
      return;
    }
    if (this.disposed || this.starting || this.state !== "disconnected") return;
    this.attempt?.abort();
    const attempt = new AbortController();
    this.attempt = attempt;
    this.bridge.clearError();
    this.bridge.resetSeconds();
    this.bridge.queue(null);
    const mode = this.bridge.signaling();
    const unsupported = !mode
      ? `signaling=${JSON.stringify(this.bridge.signalingName())}`
      : !this.bridge.media()
        ? `transport=${JSON.stringify(this.bridge.transportName())}`
        : null;
    if (!mode || unsupported) {
      this.bridge.showError(new InvalidInput(`${unsupported} is not supported by this front end.`));
      this.bridge.save();
      return;
    }
    this.starting = true;
    this.notify();
    this.bridge.save();
    this.signaling.prefetch();
    const source = this.sources.ensure();
    // after the token and the source's own asset (screen, video, Python): the kernel answers the
    // comm's requests in order, and the socket waits for those two
    this.media.preload();
    try {
      await source;
    } catch (error) {
      if (!attempt.signal.aborted) {
        this.starting = false;
        this.bridge.showError(asError(error));
        this.bridge.save();
        this.notify();
      }
      return;
    }
    if (attempt.signal.aborted || this.disposed) return; // stopped meanwhile
    this.starting = false;
    if (mode.kernelSendsUpdates) {
      // the kernel sent the updates of the last session: start from the traitlets
      this.bridge.applyPrompt();
      this.bridge.applyImage();
    }
    this.loop.feed((s, now) => s.start(now));
    // after the core left "disconnected": listeners never see a started widget as stopped
    this.notify();
  }

  stop(): void {
    this.attempt?.abort();
    this.attempt = null;
    this.signaling.forgetPrefetch();
    this.starting = false;
    this.loop.feed((s, now) => s.stop(now));
    this.releaseSource();
    this.notify();
  }

  listCameras(): Promise<MediaDeviceInfo[]> {
    return this.deps.listCameras();
  }

  dismissError(): void {
    this.bridge.clearError();
    this.bridge.save();
  }

  /**
   * The widget's kernel restarted, shut down or was replaced, or its notebook closed (host.ts): the
   * model stays in the page, but nothing in Python can see or stop this session any more. End it
   * and say so; the views stay, showing why. `kernelReachable`: the old kernel still hears this
   * comm (the notebook closed, its kernel runs on), so it is told the final state.
   */
  kernelLost(message: string, kernelReachable = false): void {
    if (this.disposed || this.comm.gone !== null) return;
    if (!kernelReachable) this.comm.gone = message;
    this.stop();
    this.bridge.showError(new KernelGone(message));
    this.bridge.save();
    this.comm.gone = message;
    this.notify();
  }

  /** The model is gone (w.close(), re-run cell) or the page unloads: release everything. */
  dispose(): void {
    if (this.disposed) return;
    this.stop();
    this.disposed = true;
    this.frames.dispose();
    if (this.orphanTimer !== null) this.deps.clearTimeout(this.orphanTimer);
    this.sources.release();
    this.loop.dispose();
    this.bridge.dispose();
    this.media.dispose();
    this.signaling.dispose();
    this.tokens.dispose();
    this.comm.dispose();
    this.listeners.clear();
  }

  // ---- the core's actions ------------------------------------------------------------------------

  private execute(action: Action): void {
    if (isMediaAction(action)) {
      // a room of an emulator on every interface: at the page's host (reach.ts)
      this.media.handle(action.kind === "JoinRoom" ? { ...action, url: fillWildcardHost(action.url, this.pageHost()) } : action);
      return;
    }
    switch (action.kind) {
      case "OpenSocket":
        this.signaling.connect(action.attempt);
        break;
      case "CloseSocket":
        this.signaling.close(action.code, action.reason);
        break;
      case "Send":
        this.signaling.send(action.message);
        break;
      case "StateChanged":
        this.bridge.state(action.state);
        if (action.state === "disconnected") this.releaseSource();
        this.notify();
        break;
      case "Resolve":
        this.bridge.settled(action.requestId, action.superseded ? null : true, null);
        break;
      case "Fail":
        this.bridge.settled(action.requestId, false, action.error);
        break;
      case "Emit":
        if (action.name === "generation_tick") this.bridge.tick(action.value);
        else if (action.name === "session_id") this.bridge.sessionId(action.value);
        else if (action.name === "error") this.bridge.showError(this.explain(action.value));
        else if (action.name === "queue") this.bridge.queue(action.value);
        else debug("generation ended:", action.value);
        break;
    }
  }

  // ---- the input source --------------------------------------------------------------------------

  private sourceEnded(kind: SourceKind): void {
    if (kind !== "screen") {
      this.bridge.showError(
        new MediaError("camera", "The camera stopped (unplugged or taken by another application): press Start again."),
      );
    }
    this.stop();
  }

  /** Source settings changed: swap the track under a running session. */
  private async restartSource(): Promise<void> {
    if (!this.sources.open) return;
    this.releaseSource(true);
    try {
      const source = await this.sources.ensure();
      await this.media.replaceTrack(source.track);
    } catch (error) {
      if (error instanceof ConnectionLost) return;
      this.bridge.showError(asError(error));
      this.stop();
    }
  }

  private releaseSource(keepPreview = false): void {
    this.media.discardPrepared(); // made with this source's track
    this.sources.release(keepPreview);
  }

  /** A media failure whose cause the page can see (a remote kernel's local emulator) says so. */
  private explain(error: DecartError): DecartError {
    return explainMediaFailure(error, this.pageHost(), this.bridge.target().remoteHelp);
  }

  private pageHost(): string {
    return (this.deps.pageHost ?? currentPageHost)();
  }

  /** End the session for a reason the core cannot see (token refused, unusable URL). */
  private fail(error: DecartError): void {
    this.loop.feed((s, now) => s.stop(now));
    this.bridge.showError(error);
    this.bridge.save();
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
