// How protocol frames reach the service. The session core only sees socket_opened / message /
// socket_closed, so any carrier of text frames fits behind `Transport`: the browser WebSocket
// here (signaling "direct" and "proxy"), the widget comm for signaling "kernel"
// (kernel_transport.ts).

import { kernelSignalingMode } from "./kernel_transport";
import type { DecartError } from "./errors";
import { currentPageHost, fillWildcardHost, neverReachable, unreachableSignaling } from "./reach";

export interface Transport {
  open(): void;
  send(frame: string): void;
  /** Close it; no event fires after this call. */
  close(code?: number, reason?: string): void;
  onopen: (() => void) | null;
  onmessage: ((frame: string) => void) | null;
  /** `code` is null when the connection could not be made at all. */
  onclose: ((code: number | null, reason: string) => void) | null;
  /** The error that ends the session, with no retry, when the connection cannot be made at all
   * (an emulator beside a kernel on another host: reach.ts). */
  neverOpened?: DecartError | null;
}

/** What the kernel answered to a token_request. */
export interface Credential {
  apiKey: string;
  realtimeUrl?: string;
}

/** The widget comm, as kernel signaling uses it: custom messages both ways, binary buffers. */
export interface KernelChannel {
  send(content: Record<string, unknown>, buffers?: ArrayBuffer[]): void;
  /** Listen to the kernel's custom messages; returns the function that stops listening. */
  listen(handler: (content: unknown, buffers: unknown[]) => void): () => void;
}

export interface ConnectContext {
  model: string;
  realtimeUrl: string;
  /** the output resolution asked of the service ("720p", "1080p"); absent: its default */
  resolution?: string | null;
  credential: Credential | null;
  /** the widget comm (the controller always gives it; signaling "kernel" needs it) */
  kernel?: KernelChannel;
  /** the kernel's ways out for a page on another host (`remote_page_help`, reach.ts) */
  remoteHelp?: string;
}

/**
 * A signaling mode, as an object: what it needs and how it connects. The `signaling` traitlet only
 * selects one by name (defaultSignalingModes); no other code compares the names.
 */
export interface SignalingMode {
  /** Ask the kernel for a credential (token_request) before every (re)connect. */
  needsCredential: boolean;
  /**
   * The kernel itself sends prompt/image/enhance updates while a session is open (it sees the
   * traitlets change even while a cell is busy); the front end's core only sends its handshake.
   */
  kernelSendsUpdates?: boolean;
  connect(context: ConnectContext): Transport;
}

/** The part of the browser WebSocket used here. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
}
export type WebSocketFactory = (url: string) => WebSocketLike;

const OPEN = 1;

export class WebSocketTransport implements Transport {
  onopen: (() => void) | null = null;
  onmessage: ((frame: string) => void) | null = null;
  onclose: ((code: number | null, reason: string) => void) | null = null;
  neverOpened: DecartError | null = null;
  private socket: WebSocketLike | null = null;
  private opened = false;

  constructor(
    readonly url: string,
    private readonly createSocket: WebSocketFactory = (u) => new WebSocket(u),
  ) {}

  open(): void {
    const socket = this.createSocket(this.url);
    this.socket = socket;
    socket.onopen = () => {
      this.opened = true;
      this.onopen?.();
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") this.onmessage?.(event.data);
    };
    socket.onerror = () => {}; // a close event always follows
    socket.onclose = (event) => {
      this.detach();
      // 1006 before the open event means the connection was never made
      const code = !this.opened && event.code === 1006 ? null : event.code;
      this.onclose?.(code, event.reason ?? "");
    };
  }

  send(frame: string): void {
    if (this.socket?.readyState === OPEN) this.socket.send(frame);
  }

  close(code = 1000, reason = ""): void {
    const socket = this.socket;
    this.detach();
    if (!socket) return;
    try {
      // browsers only let a script send 1000 or 3000-4999
      socket.close(code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000, reason);
    } catch {
      socket.close();
    }
  }

  private detach(): void {
    const socket = this.socket;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = null;
    socket.onerror = () => {};
    this.socket = null;
  }
}

/**
 * `{realtime_url}/v1/stream?<credential>&model=<model>[&resolution=<resolution>]`; the credential
 * param depends on the mode.
 */
export function streamUrl(
  base: string,
  model: string,
  credentialParam: string,
  credential: string,
  resolution?: string | null,
): string {
  const root = base.replace(/\/+$/, "");
  const path = root.endsWith("/v1/stream") ? root : `${root}/v1/stream`;
  const query = new URLSearchParams({ [credentialParam]: credential, model });
  if (resolution) query.set("resolution", resolution);
  return `${path}${path.includes("?") ? "&" : "?"}${query.toString()}`;
}

/** A URL safe to log: credentials replaced. */
export function redactUrl(url: string): string {
  return url.replace(/([?&](?:api_key|token)=)[^&'"\s]*/g, "$1***");
}

function webSocketMode(credentialParam: string, createSocket?: WebSocketFactory, pageHost = currentPageHost): SignalingMode {
  return {
    needsCredential: true,
    connect({ model, realtimeUrl, credential, resolution, remoteHelp = "" }) {
      const raw = credential?.realtimeUrl || realtimeUrl;
      const base = fillWildcardHost(raw, pageHost());
      // a loopback URL from a kernel on another host: no attempt can ever reach it
      const unreachable = unreachableSignaling(base, pageHost(), remoteHelp);
      if (unreachable) throw unreachable;
      const url = streamUrl(base, model, credentialParam, credential?.apiKey ?? "", resolution);
      const transport = new WebSocketTransport(url, createSocket);
      transport.neverOpened = neverReachable(raw, base, pageHost(), remoteHelp);
      return transport;
    },
  };
}

/** The signaling modes this build knows. */
export function defaultSignalingModes(
  createSocket?: WebSocketFactory,
  pageHost: () => string = currentPageHost,
): Record<string, SignalingMode> {
  return {
    direct: webSocketMode("api_key", createSocket, pageHost),
    proxy: webSocketMode("token", createSocket, pageHost),
    kernel: kernelSignalingMode(),
  };
}
