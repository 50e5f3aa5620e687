import { describe, expect, it } from "vitest";
import type { Input } from "../src/core_loop";
import { AuthenticationError, ConnectionLost, type DecartError } from "../src/errors";
import { Session } from "../src/session";
import { PREFETCH_FRESH_SECONDS, SignalingLink } from "../src/signaling_link";
import type { Credential, KernelChannel, SignalingMode } from "../src/transports";
import { clockOf, FakeClock, FakeTransport, flush } from "./fakes";

/** The link's world: a core that records its inputs, credentials answered by hand. */
function setup(options: { needsCredential?: boolean; connect?: SignalingMode["connect"] } = {}) {
  const clock = new FakeClock();
  const session = new Session({ prompt: "Anime" });
  session.start(0); // the core asked for a socket
  const inputs: string[] = [];
  const transports: FakeTransport[] = [];
  const credentials: { resolve(c: Credential): void; reject(e: DecartError): void }[] = [];
  const failures: DecartError[] = [];
  let connecting = 0;
  let mode: SignalingMode | undefined = {
    needsCredential: options.needsCredential ?? true,
    connect:
      options.connect ??
      ((context) => {
        const transport = new FakeTransport(context);
        transports.push(transport);
        return transport;
      }),
  };
  const kernel: KernelChannel = { send: () => {}, listen: () => () => {} };
  const link = new SignalingLink({
    clock: clockOf(clock),
    toCore: (input: Input) => {
      const actions = input(session, clock.now);
      inputs.push(...actions.map((a) => (a.kind === "Send" ? `Send:${a.message.type}` : a.kind)));
    },
    mode: () => mode,
    target: () => ({ model: "lucy-2.1", realtimeUrl: "ws://service:1" }),
    requestCredential: () => new Promise((resolve, reject) => credentials.push({ resolve, reject })),
    kernel,
    fail: (error) => failures.push(error),
    connecting: () => connecting++,
  });
  return {
    clock, session, inputs, transports, credentials, failures, link, kernel,
    connecting: () => connecting,
    forgetMode: () => (mode = undefined),
  };
}

describe("SignalingLink", () => {
  it("connects with the credential and the target, then feeds the transport's events to the core", async () => {
    const w = setup();
    w.link.connect(0);
    expect(w.transports).toHaveLength(0);
    w.credentials[0]!.resolve({ apiKey: "ek_1" });
    await flush();
    const transport = w.transports[0]!;
    expect(transport.context).toEqual({
      model: "lucy-2.1",
      realtimeUrl: "ws://service:1",
      credential: { apiKey: "ek_1" },
      kernel: w.kernel,
    });
    expect(transport.opened).toBe(true);
    expect(w.connecting()).toBe(1);
    transport.accept();
    expect(w.inputs).toContain("Send:prompt");
    w.link.send({ type: "prompt", prompt: "Noir", enhance_prompt: true });
    expect(transport.sent).toEqual([{ type: "prompt", prompt: "Noir", enhance_prompt: true }]);
  });

  it("asks for no credential where the mode needs none", async () => {
    const w = setup({ needsCredential: false });
    w.link.prefetch();
    w.link.connect(0);
    await flush();
    expect(w.credentials).toHaveLength(0);
    expect(w.transports[0]!.context.credential).toBeNull();
  });

  it("drops every event of a connection it closed, and of a late credential", async () => {
    const w = setup();
    w.link.connect(0);
    w.link.close(1000, "");
    w.credentials[0]!.resolve({ apiKey: "late" });
    await flush();
    expect(w.transports).toHaveLength(0);
    w.link.connect(1);
    w.credentials[1]!.resolve({ apiKey: "ek" });
    await flush();
    const transport = w.transports[0]!;
    w.link.close(4000, "bye");
    expect(transport.closed).toEqual([4000, "bye"]);
    const before = w.inputs.length;
    transport.accept();
    transport.deliver({ type: "generation_started" });
    transport.drop(1006);
    expect(w.inputs).toHaveLength(before);
  });

  it("ignores malformed frames", async () => {
    const w = setup();
    w.link.connect(0);
    w.credentials[0]!.resolve({ apiKey: "ek" });
    await flush();
    const before = w.inputs.length;
    w.transports[0]!.deliver("{not json");
    expect(w.inputs).toHaveLength(before);
  });

  it("a refused credential ends the session; a lost one is a socket that never opened", async () => {
    const w = setup();
    w.link.connect(0);
    w.credentials[0]!.reject(new AuthenticationError("Invalid API key"));
    await flush();
    expect(w.failures.map((e) => e.kind)).toEqual(["authentication"]);
    w.link.connect(1);
    w.credentials[1]!.reject(new ConnectionLost("no answer"));
    await flush();
    expect(w.failures).toHaveLength(1);
    expect(w.session.state).toBe("connecting"); // never connected: nothing was lost
    expect(w.session.retriesUsed).toBe(1);
  });

  it("a transport that cannot be made fails with the URL's credential redacted", async () => {
    const w = setup({
      connect: () => {
        throw new SyntaxError("The URL 'ws://x/v1/stream?token=tok_secret&model=m' is invalid.");
      },
    });
    w.link.connect(0);
    w.credentials[0]!.resolve({ apiKey: "tok_secret" });
    await flush();
    expect(w.failures[0]!.kind).toBe("invalid_input");
    expect(w.failures[0]!.message).toBe("Cannot open the realtime connection: The URL 'ws://x/v1/stream?token=***&model=m' is invalid.");
  });

  it("an unknown mode closes the socket for the core at once", () => {
    const w = setup();
    w.forgetMode();
    w.link.connect(0);
    expect(w.session.state).toBe("connecting"); // never connected: nothing was lost
    expect(w.session.retriesUsed).toBe(1);
  });

  it("uses a prefetched credential once, and only while fresh", async () => {
    const w = setup();
    w.link.prefetch();
    expect(w.credentials).toHaveLength(1);
    w.link.connect(0);
    expect(w.credentials).toHaveLength(1); // the prefetched one
    w.link.connect(1);
    expect(w.credentials).toHaveLength(2);

    w.link.prefetch();
    w.clock.advance(PREFETCH_FRESH_SECONDS + 1);
    w.link.connect(2);
    expect(w.credentials).toHaveLength(4); // stale: asked again

    w.link.prefetch();
    w.link.forgetPrefetch();
    w.link.connect(3);
    expect(w.credentials).toHaveLength(6);
  });
});
