// Signaling "kernel": protocol frames ride the widget comm to the kernel, which relays them to
// the realtime service with its key (decart_widget/widget/relay.py). The browser holds no
// credential at all. Messages (custom, JSON; `id` names one connection, so a late message of an
// earlier connection is ignored):
//
//   front -> kernel  {type:"signal_open", id, model}
//                    {type:"signal", id, frame}       a set_image's image rides as a binary
//                                                     buffer, image_data left out of the JSON
//                    {type:"signal_close", id, code, reason}
//   kernel -> front  {type:"signal_opened", id}
//                    {type:"signal", id, frame}
//                    {type:"signal_closed", id, code (null: never opened), reason}

import { fromBase64 } from "./bytes";
import type { KernelChannel, SignalingMode, Transport } from "./transports";

interface KernelSignal {
  type: string;
  id?: unknown;
  frame?: unknown;
  code?: unknown;
  reason?: unknown;
}

export class KernelTransport implements Transport {
  onopen: (() => void) | null = null;
  onmessage: ((frame: string) => void) | null = null;
  onclose: ((code: number | null, reason: string) => void) | null = null;
  private stopListening: (() => void) | null = null;
  private opened = false;

  constructor(
    readonly id: number,
    readonly model: string,
    private readonly channel: KernelChannel,
  ) {}

  open(): void {
    this.stopListening = this.channel.listen((content) => this.receive(content as KernelSignal));
    this.channel.send({ type: "signal_open", id: this.id, model: this.model });
  }

  send(frame: string): void {
    if (!this.opened || !this.stopListening) return;
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(frame) as Record<string, unknown>;
    } catch {
      return;
    }
    const image = message["image_data"];
    if (message["type"] === "set_image" && typeof image === "string") {
      // binary over the comm: no base64 inflation, no megabytes of JSON to parse in the kernel
      const { image_data: _omitted, ...rest } = message;
      const bytes = fromBase64(image);
      this.channel.send({ type: "signal", id: this.id, frame: rest }, [bytes.buffer as ArrayBuffer]);
      return;
    }
    this.channel.send({ type: "signal", id: this.id, frame: message });
  }

  close(code = 1000, reason = ""): void {
    if (!this.stopListening) return;
    this.detach();
    this.channel.send({ type: "signal_close", id: this.id, code, reason });
  }

  private receive(content: KernelSignal): void {
    if (!content || typeof content !== "object" || content.id !== this.id) return;
    switch (content.type) {
      case "signal_opened":
        if (this.opened) return;
        this.opened = true;
        this.onopen?.();
        break;
      case "signal": {
        if (!this.opened) return;
        const frame = content.frame;
        this.onmessage?.(typeof frame === "string" ? frame : JSON.stringify(frame));
        break;
      }
      case "signal_closed": {
        const code = typeof content.code === "number" ? content.code : null;
        const reason = typeof content.reason === "string" ? content.reason : "";
        this.detach();
        this.onclose?.(code, reason);
        break;
      }
    }
  }

  private detach(): void {
    this.stopListening?.();
    this.stopListening = null;
    this.opened = false;
  }
}

/** Connection ids: random start, so a reloaded page never reuses a live connection's id. */
let lastId = Math.floor(Math.random() * 1_000_000_000);

export function kernelSignalingMode(): SignalingMode {
  return {
    needsCredential: false,
    kernelSendsUpdates: true,
    connect({ model, kernel }) {
      if (!kernel) throw new Error("kernel signaling needs the widget comm");
      lastId = (lastId + 1) % 2_000_000_000;
      return new KernelTransport(lastId, model, kernel);
    },
  };
}
