// Test doubles: an anywidget model, a clock with timers, a transport, a peer and a source.
import type { ControllerDeps } from "../src/controller";
import { FrameCapture } from "../src/frame_capture";
import type { LiveRoom, RoomEvents } from "../src/livekit_api";
import type { IceCandidateInfo, TurnConfig } from "../src/messages";
import type { Peer, PeerEvents } from "../src/peer";
import { webrtcMedia } from "../src/peer_link";
import type { InputSource, SourceKind, SourceOptions } from "../src/sources";
import type { WidgetModel, WidgetTraits } from "../src/traits";
import type { ConnectContext, SignalingMode, Transport } from "../src/transports";

type Handler = (...args: unknown[]) => void;

export const DEFAULT_TRAITS: WidgetTraits = {
  model: "lucy-2.1",
  model_spec: { name: "lucy-2.1", width: 1088, height: 624, fps: 30 },
  prompt: "Anime",
  enhance: true,
  image: null,
  source: "camera",
  video: null,
  device_id: "",
  camera: {},
  mirror: false,
  signaling: "direct",
  transport: "webrtc",
  resolution: null,
  realtime_url: "ws://127.0.0.1:9/",
  ice_servers: [],
  remote_page_help: "",
  autostart: false,
  note: "",
  connection_state: "disconnected",
  generation_seconds: 0,
  session_id: "",
  last_error: "",
  last_error_kind: "",
  stats: {},
  queue_position: null,
  queue_size: null,
};

/** Backbone-like: set() fires change:<key> at once when the value changes. */
export class FakeModel {
  readonly fromFront: unknown[] = [];
  saves = 0;
  private readonly values: Record<string, unknown>;
  private readonly handlers = new Map<string, Set<Handler>>();

  constructor(traits: Partial<WidgetTraits> = {}) {
    this.values = { ...DEFAULT_TRAITS, ...traits };
  }
  get(key: string): any {
    return this.values[key];
  }
  set(key: string, value: unknown): void {
    if (this.values[key] === value) return;
    this.values[key] = value;
    this.emit(`change:${key}`);
  }
  on(event: string, handler: Handler): void {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event)!.add(handler);
  }
  off(event?: string | null, handler?: Handler | null): void {
    if (event && handler) this.handlers.get(event)?.delete(handler);
  }
  save_changes(): void {
    this.saves++;
  }
  /** binary buffers of the messages in `fromFront` (same index) */
  readonly fromFrontBuffers: unknown[][] = [];
  /** the state the front end reported by custom message (see src/sync.ts), in order */
  readonly reports: { state: Record<string, unknown>; buffers: unknown[] }[] = [];
  send(content: unknown, _callbacks?: unknown, buffers?: unknown[]): void {
    const message = content as { type?: string; state?: Record<string, unknown> };
    if (message.type === "report") {
      this.reports.push({ state: message.state ?? {}, buffers: buffers ?? [] });
      return;
    }
    this.fromFront.push(content);
    this.fromFrontBuffers.push(buffers ?? []);
  }
  /** the kernel sends a custom message */
  fromKernel(content: unknown, buffers: unknown[] = []): void {
    this.emit("msg:custom", content, buffers);
  }
  /** Python sets a traitlet */
  pythonSets(key: string, value: unknown): void {
    this.set(key, value);
  }
  listenerCount(): number {
    let count = 0;
    for (const set of this.handlers.values()) count += set.size;
    return count;
  }
  asModel(): WidgetModel {
    return this as unknown as WidgetModel;
  }
  private emit(event: string, ...args: unknown[]): void {
    for (const handler of [...(this.handlers.get(event) ?? [])]) handler(...args);
  }
}

export class FakeClock {
  now = 0;
  private timers: { id: number; at: number; callback: () => void }[] = [];
  private lastId = 0;
  setTimeout = (callback: () => void, ms: number): number => {
    const id = ++this.lastId;
    this.timers.push({ id, at: this.now + ms / 1000, callback });
    return id;
  };
  clearTimeout = (handle: unknown): void => {
    this.timers = this.timers.filter((t) => t.id !== handle);
  };
  /** Move time forward, firing every timer that falls due, in order. */
  advance(seconds: number): void {
    const end = this.now + seconds;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > end + 1e-9) break;
      this.timers.shift();
      this.now = Math.max(this.now, next.at);
      next.callback();
    }
    this.now = end;
  }
  pending(): number {
    return this.timers.length;
  }
}

export class FakeTransport implements Transport {
  onopen: (() => void) | null = null;
  onmessage: ((frame: string) => void) | null = null;
  onclose: ((code: number | null, reason: string) => void) | null = null;
  readonly sent: unknown[] = [];
  opened = false;
  closed: [number | undefined, string | undefined] | null = null;
  constructor(readonly context: ConnectContext) {}
  open(): void {
    this.opened = true;
  }
  send(frame: string): void {
    this.sent.push(JSON.parse(frame));
  }
  close(code?: number, reason?: string): void {
    this.closed = [code, reason];
  }
  // server side
  accept(): void {
    this.onopen?.();
  }
  deliver(message: unknown): void {
    this.onmessage?.(typeof message === "string" ? message : JSON.stringify(message));
  }
  drop(code: number | null, reason = ""): void {
    this.onclose?.(code, reason);
  }
}

export class FakePeer implements Peer {
  started = false;
  closed = false;
  track: MediaStreamTrack | null | undefined;
  readonly answers: string[] = [];
  readonly remoteCandidates: (IceCandidateInfo | null)[] = [];
  readonly restarts: (TurnConfig | null)[] = [];
  replacedWith: (MediaStreamTrack | null)[] = [];
  statsCalls = 0;
  constructor(
    readonly iceServers: RTCIceServer[],
    readonly events: PeerEvents,
  ) {}
  async start(track: MediaStreamTrack | null): Promise<void> {
    this.started = true;
    this.track = track;
  }
  async applyAnswer(sdp: string): Promise<void> {
    this.answers.push(sdp);
  }
  async addRemoteCandidate(candidate: IceCandidateInfo | null): Promise<void> {
    this.remoteCandidates.push(candidate);
  }
  async restartIce(turn: TurnConfig | null): Promise<void> {
    this.restarts.push(turn);
  }
  async replaceTrack(track: MediaStreamTrack | null): Promise<void> {
    this.replacedWith.push(track);
  }
  getStats(): Promise<RTCStatsReport> | null {
    this.statsCalls++;
    const entries = [
      { type: "outbound-rtp", kind: "video", framesPerSecond: 30, framesEncoded: 300 },
      { type: "inbound-rtp", kind: "video", framesPerSecond: 29, framesDecoded: 290, bytesReceived: 125_000 * this.statsCalls },
      { type: "candidate-pair", state: "succeeded", nominated: true, currentRoundTripTime: 0.042 },
    ];
    return Promise.resolve(new Map(entries.map((e, i) => [String(i), e])) as unknown as RTCStatsReport);
  }
  close(): void {
    this.closed = true;
  }
}

export class FakeTrack {
  stopped = false;
  private readonly listeners: Record<string, (() => void)[]> = {};
  addEventListener(event: string, listener: () => void): void {
    (this.listeners[event] ??= []).push(listener);
  }
  end(): void {
    this.stopped = true;
    for (const listener of this.listeners["ended"] ?? []) listener();
  }
}

export class FakeSource implements InputSource {
  stopped = false;
  readonly track: MediaStreamTrack;
  readonly stream: MediaStream =
    typeof MediaStream === "function" ? new MediaStream() : ({ id: "local" } as unknown as MediaStream);
  constructor(
    readonly kind: SourceKind,
    readonly options: SourceOptions,
    readonly fakeTrack = new FakeTrack(),
  ) {
    this.track = fakeTrack as unknown as MediaStreamTrack;
  }
  stop(): void {
    this.stopped = true;
  }
}

/** A controller's world: every fake, and the deps wired to them. */
export function world(options: { sourceError?: Error } = {}) {
  const clock = new FakeClock();
  const transports: FakeTransport[] = [];
  const peers: FakePeer[] = [];
  const sources: FakeSource[] = [];
  const mode: SignalingMode = {
    needsCredential: true,
    connect(context) {
      const transport = new FakeTransport(context);
      transports.push(transport);
      return transport;
    },
  };
  const deps: ControllerDeps = {
    now: () => clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    signalingModes: { direct: mode, proxy: mode },
    media: {
      webrtc: webrtcMedia((iceServers, events) => {
        const peer = new FakePeer(iceServers, events);
        peers.push(peer);
        return peer;
      }),
    },
    async openSource(kind, sourceOptions) {
      if (options.sourceError) throw options.sourceError;
      const source = new FakeSource(kind, sourceOptions);
      sources.push(source);
      return source;
    },
    listCameras: async () => [],
    frames: (host) =>
      new FrameCapture({
        ...host,
        reader: () => ({
          read: () => Promise.reject(new Error("this world reads no pixels")),
          dispose: () => undefined,
        }),
      }),
  };
  return { clock, transports, peers, sources, deps };
}

export const flush = (): Promise<void> => new Promise((resolve) => globalThis.setTimeout(resolve, 0));

/** A FakeClock as the `Clock` the front end's parts take. */
export const clockOf = (clock: FakeClock) => ({
  now: () => clock.now,
  setTimeout: clock.setTimeout,
  clearTimeout: clock.clearTimeout,
});

/** Enough of a MediaStream for the link (happy-dom has none). */
export class FakeStream {
  constructor(readonly tracks: MediaStreamTrack[]) {}
  getVideoTracks(): MediaStreamTrack[] {
    return this.tracks;
  }
}

export class FakeRoom implements LiveRoom {
  joined: [string, string] | null = null;
  iceServers: RTCIceServer[] | null = null;
  readonly published: MediaStreamTrack[] = [];
  closed = false;
  joinError: Error | null = null;
  publishError: Error | null = null;
  reports: RTCStatsReport[] = [];
  private release: (() => void) | null = null;
  /** join() waits for open() when true */
  hold = false;

  constructor(readonly events: RoomEvents) {}

  join(url: string, token: string, iceServers: RTCIceServer[]): Promise<void> {
    this.joined = [url, token];
    this.iceServers = iceServers;
    if (this.joinError) return Promise.reject(this.joinError);
    if (!this.hold) return Promise.resolve();
    return new Promise((resolve) => (this.release = resolve));
  }
  open(): void {
    this.release?.();
  }
  async publish(t: MediaStreamTrack): Promise<void> {
    if (this.publishError) throw this.publishError;
    this.published.push(t);
  }
  async statsReports(): Promise<RTCStatsReport[]> {
    return this.reports;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

