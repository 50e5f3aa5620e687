// The widget comm as the front end uses it: custom messages to and from the kernel. It goes quiet
// once the widget is disposed, and once the kernel behind it is gone (host.ts): a new kernel does
// not know this comm, so nothing more is said to it.

import { debug } from "./log";
import type { FrontendMessage, KernelMessage, WidgetModel } from "./traits";
import type { KernelChannel } from "./transports";

type Listener = (content: unknown, buffers: unknown) => void;

export class KernelComm {
  /** set when the kernel behind the widget is gone: the message to show on any further start */
  gone: string | null = null;
  private closed = false;
  private readonly listeners = new Set<Listener>();

  constructor(private readonly model: WidgetModel) {}

  /** Whether the kernel still hears this comm (the widget is alive and its kernel too). */
  get reachable(): boolean {
    return !this.closed && this.gone === null;
  }

  /** Send one message to the kernel, if it still hears this comm. */
  send(message: FrontendMessage): void {
    if (!this.reachable) return;
    try {
      this.model.send(message);
    } catch (error) {
      debug("send failed:", error);
    }
  }

  /** Call `handler` with every custom message from the kernel; returns the function that stops it. */
  listen(handler: (message: KernelMessage) => void): () => void {
    return this.listenRaw((content) => {
      if (content && typeof content === "object") handler(content as KernelMessage);
    });
  }

  /** The comm as kernel signaling carries frames on it (binary buffers included). */
  channel(): KernelChannel {
    return {
      send: (content, buffers) => {
        if (this.closed) return;
        this.model.send(content, undefined, buffers);
      },
      listen: (handler) => this.listenRaw((content, buffers) => handler(content, Array.isArray(buffers) ? buffers : [])),
    };
  }

  /** The widget is gone: stop listening and sending. */
  dispose(): void {
    this.closed = true;
    for (const listener of this.listeners) this.model.off("msg:custom", listener);
    this.listeners.clear();
  }

  private listenRaw(listener: Listener): () => void {
    this.model.on("msg:custom", listener);
    this.listeners.add(listener);
    return () => {
      this.model.off("msg:custom", listener);
      this.listeners.delete(listener);
    };
  }
}
