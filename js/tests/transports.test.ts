import { describe, expect, it } from "vitest";
import { WebSocketTransport, defaultSignalingModes, redactUrl, streamUrl } from "../src/transports";

class FakeSocket {
  static last: FakeSocket | null = null;
  readyState = 0;
  sent: string[] = [];
  closedWith: [number | undefined, string | undefined] | null = null;
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.last = this;
  }
  send(frame: string): void {
    this.sent.push(frame);
  }
  close(code?: number, reason?: string): void {
    this.closedWith = [code, reason];
    this.readyState = 3;
  }
  // server side
  accept(): void {
    this.readyState = 1;
    this.onopen?.({} as Event);
  }
  deliver(data: unknown): void {
    this.onmessage?.({ data } as MessageEvent);
  }
  drop(code: number, reason = ""): void {
    this.readyState = 3;
    this.onerror?.({} as Event);
    this.onclose?.({ code, reason } as CloseEvent);
  }
}

const factory = (url: string) => new FakeSocket(url);

function openTransport() {
  const transport = new WebSocketTransport("ws://host/v1/stream?api_key=k&model=m", factory);
  const events: unknown[] = [];
  transport.onopen = () => events.push("open");
  transport.onmessage = (frame) => events.push(["message", frame]);
  transport.onclose = (code, reason) => events.push(["close", code, reason]);
  transport.open();
  return { transport, socket: FakeSocket.last!, events };
}

describe("WebSocketTransport", () => {
  it("opens, passes text frames both ways, and reports the close code", () => {
    const { transport, socket, events } = openTransport();
    expect(socket.url).toBe("ws://host/v1/stream?api_key=k&model=m");
    transport.send("dropped: not open yet");
    socket.accept();
    transport.send('{"type":"prompt"}');
    socket.deliver('{"type":"generation_started"}');
    socket.deliver(new ArrayBuffer(2)); // binary frames are not part of the protocol
    socket.drop(1013, "Concurrent session limit reached.");
    expect(socket.sent).toEqual(['{"type":"prompt"}']);
    expect(events).toEqual([
      "open",
      ["message", '{"type":"generation_started"}'],
      ["close", 1013, "Concurrent session limit reached."],
    ]);
  });

  it("reports a connection that never opened as code null", () => {
    const { socket, events } = openTransport();
    socket.drop(1006);
    expect(events).toEqual([["close", null, ""]]);
  });

  it("fires nothing after a local close, and keeps the code browsers allow", () => {
    const { transport, socket, events } = openTransport();
    socket.accept();
    transport.close(1011, "bye");
    socket.drop(1000);
    socket.deliver("late");
    expect(socket.closedWith).toEqual([1000, "bye"]);
    expect(events).toEqual(["open"]);
    transport.close(); // twice is fine
  });
});

describe("URLs", () => {
  it("builds the direct-mode stream URL with the client token", () => {
    expect(streamUrl("wss://api3.decart.ai", "lucy-2.1", "api_key", "ek_abc")).toBe(
      "wss://api3.decart.ai/v1/stream?api_key=ek_abc&model=lucy-2.1",
    );
    expect(streamUrl("ws://127.0.0.1:8765/", "my model/x", "api_key", "ek")).toBe(
      "ws://127.0.0.1:8765/v1/stream?api_key=ek&model=my+model%2Fx",
    );
    expect(streamUrl("ws://h/v1/stream", "m", "token", "t")).toBe("ws://h/v1/stream?token=t&model=m");
  });

  it("asks for the widget's resolution when it has one", () => {
    expect(streamUrl("wss://h", "lucy-2.1", "api_key", "ek", "1080p")).toBe(
      "wss://h/v1/stream?api_key=ek&model=lucy-2.1&resolution=1080p",
    );
    expect(streamUrl("wss://h", "m", "api_key", "ek", null)).toBe("wss://h/v1/stream?api_key=ek&model=m");
    const proxy = defaultSignalingModes(factory)["proxy"]!.connect({
      model: "m",
      realtimeUrl: "ws://proxy:9000",
      credential: { apiKey: "t" },
      resolution: "720p",
    }) as WebSocketTransport;
    expect(proxy.url).toBe("ws://proxy:9000/v1/stream?token=t&model=m&resolution=720p");
  });

  it("redacts credentials for logs", () => {
    expect(redactUrl("wss://h/v1/stream?api_key=ek_secret&model=m")).toBe("wss://h/v1/stream?api_key=***&model=m");
    expect(redactUrl("wss://h/v1/stream?model=m&token=secret")).toBe("wss://h/v1/stream?model=m&token=***");
  });

  it("direct and proxy modes differ only in the credential parameter", () => {
    const modes = defaultSignalingModes(factory);
    expect(Object.keys(modes).sort()).toEqual(["direct", "kernel", "proxy"]);
    const direct = modes["direct"]!.connect({
      model: "lucy-2.1",
      realtimeUrl: "ws://traitlet",
      credential: { apiKey: "ek_1", realtimeUrl: "ws://from-token" },
    }) as WebSocketTransport;
    expect(direct.url).toBe("ws://from-token/v1/stream?api_key=ek_1&model=lucy-2.1");
    const proxy = modes["proxy"]!.connect({
      model: "lucy-2.1",
      realtimeUrl: "ws://proxy:9000",
      credential: { apiKey: "user-token" },
    }) as WebSocketTransport;
    expect(proxy.url).toBe("ws://proxy:9000/v1/stream?token=user-token&model=lucy-2.1");
    expect(modes["direct"]!.needsCredential && modes["proxy"]!.needsCredential).toBe(true);
  });
});
