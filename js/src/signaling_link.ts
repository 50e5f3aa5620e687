// The signaling link: one connection at a time to the realtime service, over whatever the
// widget's signaling mode gives (a browser WebSocket, direct or through a proxy, or the widget
// comm to the kernel: transports.ts, kernel_transport.ts). It fetches the credential the mode
// needs, opens the transport, and turns its events into inputs of the session core. Each
// connection has its own AbortController: events of a connection already left are dropped.

import type { Clock, Input } from "./core_loop";
import { asError, DecartError, InvalidInput } from "./errors";
import { debug } from "./log";
import { encode, parseServer, type ClientMessage } from "./messages";
import { redactUrl, type Credential, type KernelChannel, type SignalingMode, type Transport } from "./transports";

/** A token asked for while the camera opened is used only if the camera took less than this. */
export const PREFETCH_FRESH_SECONDS = 20;

export interface SignalingHost {
  clock: Clock;
  /** feed the session core */
  toCore(input: Input): void;
  /** the widget's signaling mode (undefined: one this front end does not know) */
  mode(): SignalingMode | undefined;
  /** what the connection is for: the model name and the service's URL */
  target(): { model: string; realtimeUrl: string; resolution?: string | null; remoteHelp?: string };
  /** ask the kernel for a credential (kernel_rpc.ts) */
  requestCredential(): Promise<Credential>;
  kernel: KernelChannel;
  /** end the session for a reason the core cannot see (token refused, unusable URL) */
  fail(error: DecartError): void;
  /** the transport started connecting: a good moment to prepare the media */
  connecting(): void;
}

// The browser's message may quote the URL: never let a credential reach a traitlet.
const unusableConnection = (error: unknown): DecartError =>
  new InvalidInput(`Cannot open the realtime connection: ${redactUrl(asError(error).message)}`);

export class SignalingLink {
  private transport: Transport | null = null;
  /** the current connection's life; aborted when it is closed or replaced */
  private connection: AbortController | null = null;
  private prefetched: { pending: Promise<Credential>; at: number } | null = null;

  constructor(private readonly host: SignalingHost) {}

  /**
   * Ask for the first connect's credential while the camera opens, so the socket opens as soon
   * as the source is ready. Used only while fresh: a user may take long to grant the camera.
   */
  prefetch(): void {
    this.prefetched = null;
    if (!this.host.mode()?.needsCredential) return;
    const pending = this.host.requestCredential();
    pending.catch(() => undefined); // a failure surfaces when the connect takes it
    this.prefetched = { pending, at: this.host.clock.now() };
  }

  /** Drop a prefetched credential (the start was abandoned). */
  forgetPrefetch(): void {
    this.prefetched = null;
  }

  /** The core's OpenSocket. */
  connect(attempt: number): void {
    this.connection?.abort();
    const connection = new AbortController();
    this.connection = connection;
    const live = (): boolean => !connection.signal.aborted;
    const mode = this.host.mode();
    if (!mode) {
      this.host.toCore((s, now) => s.socketClosed(now, null, "no transport"));
      return;
    }
    debug("connecting, attempt", attempt);
    const credential = mode.needsCredential
      ? (this.takePrefetched() ?? this.host.requestCredential())
      : Promise.resolve(null);
    credential.then(
      (value) => {
        if (!live()) return;
        let transport: Transport;
        try {
          transport = mode.connect({ ...this.host.target(), credential: value, kernel: this.host.kernel });
        } catch (error) {
          // e.g. a malformed realtime_url, or one this browser cannot reach: retrying the same URL
          // cannot help (a mode's own typed error says why)
          this.host.fail(error instanceof DecartError ? error : unusableConnection(error));
          return;
        }
        this.transport = transport;
        transport.onopen = () => {
          if (live()) this.host.toCore((s, now) => s.socketOpened(now));
        };
        transport.onmessage = (frame) => {
          if (live()) this.receive(frame);
        };
        transport.onclose = (code, reason) => {
          if (!live()) return;
          this.transport = null;
          // a socket that could not be made, to a server no retry brings into reach
          if (code === null && transport.neverOpened) this.host.fail(transport.neverOpened);
          else this.host.toCore((s, now) => s.socketClosed(now, code, reason));
        };
        try {
          transport.open();
        } catch (error) {
          this.host.fail(unusableConnection(error));
          return;
        }
        this.host.connecting(); // after the socket starts connecting: it must not wait for the media
      },
      (error: DecartError) => {
        if (!live()) return;
        if (error.permanent) this.host.fail(error);
        else this.host.toCore((s, now) => s.socketClosed(now, null, error.message));
      },
    );
  }

  /** The core's Send. */
  send(message: ClientMessage): void {
    this.transport?.send(encode(message));
  }

  /** The core's CloseSocket; no event of this connection reaches the core afterwards. */
  close(code?: number, reason?: string): void {
    this.connection?.abort();
    this.connection = null;
    this.transport?.close(code, reason);
    this.transport = null;
  }

  /** The widget is gone: close the connection and ignore any late credential. */
  dispose(): void {
    this.close();
    this.prefetched = null;
  }

  private takePrefetched(): Promise<Credential> | null {
    const prefetched = this.prefetched;
    this.prefetched = null;
    if (!prefetched || this.host.clock.now() - prefetched.at > PREFETCH_FRESH_SECONDS) return null;
    return prefetched.pending;
  }

  private receive(frame: string): void {
    let message;
    try {
      message = parseServer(frame);
    } catch (error) {
      debug("ignoring a malformed frame:", (error as Error).message);
      return;
    }
    if (message) this.host.toCore((s, now) => s.message(now, message));
  }
}
