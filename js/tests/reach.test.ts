import { describe, expect, it } from "vitest";
import { ConnectionLost, SessionEnded } from "../src/errors";
import { explainMediaFailure, fillWildcardHost, isLoopbackHost, loopbackOfAnotherHost, neverReachable } from "../src/reach";
import { SignalingLink } from "../src/signaling_link";
import { Session } from "../src/session";
import { defaultSignalingModes } from "../src/transports";
import { clockOf, FakeClock, flush } from "./fakes";

/** The kernel's text for an emulator beside it in direct signaling (decart_widget/widget/_reach.py;
 * tests/integration/test_remote_kernel.py checks the kernel sends it). */
const HELP =
  'The browser cannot reach the local emulator running next to the kernel if this page comes from another host (a remote server, a hub, an SSH tunnel): set DECART_API_KEY to use the real service, run Jupyter on this computer, or give ice_servers with a TURN server both reach. Its signaling can go through the kernel instead: signaling="kernel" (its media still has to reach the kernel\'s host).';

describe("reach: the browser's loopback is not a remote kernel's", () => {
  it("knows the loopback names", () => {
    for (const host of ["localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "LOCALHOST"]) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
    for (const host of ["10.0.0.1", "hub.example.org", "0.0.0.0", "128.0.0.1", ""]) expect(isLoopbackHost(host), host).toBe(false);
  });

  it("flags a loopback URL only when the page is served from another host", () => {
    expect(loopbackOfAnotherHost("ws://127.0.0.1:8000", "10.1.0.2")).toBe("127.0.0.1:8000");
    expect(loopbackOfAnotherHost("ws://localhost:8000/v1/stream", "hub.example.org")).toBe("localhost:8000");
    expect(loopbackOfAnotherHost("ws://127.0.0.1:8000", "localhost")).toBeNull(); // local Jupyter
    expect(loopbackOfAnotherHost("ws://127.0.0.1:8000", "127.0.0.1")).toBeNull();
    expect(loopbackOfAnotherHost("wss://api3.decart.ai", "hub.example.org")).toBeNull();
    expect(loopbackOfAnotherHost("ws://127.0.0.1:8000", "")).toBeNull(); // no page: cannot tell
    expect(loopbackOfAnotherHost("not a url", "hub.example.org")).toBeNull();
  });

  it("a direct or proxy mode refuses such a URL at once, naming the cause and the ways out, never the credential", () => {
    for (const name of ["direct", "proxy"]) {
      const mode = defaultSignalingModes(() => {
        throw new Error("no socket may be opened");
      }, () => "10.1.0.2")[name]!;
      let caught: unknown;
      try {
        mode.connect({ model: "lucy-2.1", realtimeUrl: "ws://127.0.0.1:9", credential: { apiKey: "ek_secret", realtimeUrl: "ws://127.0.0.1:8123" }, remoteHelp: HELP });
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(ConnectionLost);
      const message = (caught as Error).message;
      expect(message).toContain("127.0.0.1:8123");
      expect(message).toContain("10.1.0.2");
      expect(message).toContain("cannot reach the local emulator running next to the kernel");
      expect(message).toContain("DECART_API_KEY");
      expect(message).toContain('signaling="kernel"');
      expect(message).toContain("ice_servers");
      expect(message).not.toContain("ek_secret");
    }
  });

  it("the same URL from a local page connects as before", () => {
    const opened: string[] = [];
    const mode = defaultSignalingModes((url) => {
      opened.push(url);
      return { readyState: 0, send() {}, close() {}, onopen: null, onmessage: null, onclose: null, onerror: null };
    }, () => "localhost")["direct"]!;
    mode.connect({ model: "m", realtimeUrl: "ws://127.0.0.1:9", credential: { apiKey: "ek" } }).open();
    expect(opened).toEqual(["ws://127.0.0.1:9/v1/stream?api_key=ek&model=m"]);
  });

  it("the signaling link ends the session with that error: one attempt, one credential, no retry", async () => {
    const clock = new FakeClock();
    const session = new Session({ prompt: "Anime" });
    session.start(0);
    const failures: Error[] = [];
    let credentials = 0;
    const link = new SignalingLink({
      clock: clockOf(clock),
      toCore: (input) => void input(session, clock.now),
      mode: () => defaultSignalingModes(undefined, () => "jupyter.example.org")["direct"],
      target: () => ({ model: "lucy-2.1", realtimeUrl: "ws://127.0.0.1:8123", remoteHelp: HELP }),
      requestCredential: () => {
        credentials++;
        return Promise.resolve({ apiKey: "ek_1" });
      },
      kernel: { send: () => {}, listen: () => () => {} },
      fail: (error) => failures.push(error),
      connecting: () => {},
    });
    link.connect(0);
    await flush();
    expect(credentials).toBe(1);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toBeInstanceOf(ConnectionLost);
    expect(failures[0]!.message).toContain(HELP);
    expect(failures[0]!.message).not.toMatch(/connection lost/i);
  });

  it("explains a media failure of a loopback service seen from a remote page, and leaves others alone", () => {
    const failed = new SessionEnded("the server ended the generation: peer connection failed: no media path between the client and the emulator", "error");
    const explained = explainMediaFailure(failed, "10.1.0.2", HELP);
    expect(explained.kind).toBe("session_ended");
    expect(explained.message).toContain("peer connection failed");
    expect(explained.message).toContain(HELP);
    expect(explainMediaFailure(explained, "10.1.0.2", HELP).message).toBe(explained.message);
    const timeout = new ConnectionLost("the video could not connect: no media connection within 20 s");
    expect(explainMediaFailure(timeout, "10.1.0.2", HELP).message).toContain(HELP);
    // a page on localhost may be tunnelled to a remote Jupyter (ssh -L): the text says when it applies
    expect(explainMediaFailure(timeout, "localhost", HELP).message).toBe(`${timeout.message}. ${HELP}`);
    expect(explainMediaFailure(timeout, "10.1.0.2", "")).toBe(timeout); // the service is not beside the kernel
    const other = new ConnectionLost("could not connect after 6 attempts: refused");
    expect(explainMediaFailure(other, "10.1.0.2", HELP)).toBe(other);
    // from localhost, a socket that never opened may be a tunnel's doing too
    expect(explainMediaFailure(other, "localhost", HELP).message).toBe(`${other.message}. ${HELP}`);
    expect(explainMediaFailure(other, "localhost", "")).toBe(other);
  });

  it("explains a media failure of an emulator beside the kernel only when the page is on another host", () => {
    const timeout = new ConnectionLost("the video could not connect: no media connection within 20 s");
    const explained = explainMediaFailure(timeout, "10.1.0.2", HELP);
    expect(explained.message).toBe(`the video could not connect: no media connection within 20 s. ${HELP}`);
    expect(explainMediaFailure(timeout, "", HELP)).toBe(timeout); // no page: cannot tell
    // the emulator's own reason already names the ways out: nothing is added
    const ended = new SessionEnded("the server ended the generation: peer connection failed: no media path (... set DECART_API_KEY ...)", "error");
    expect(explainMediaFailure(ended, "10.1.0.2", HELP)).toBe(ended);
    const room = new ConnectionLost("the video could not connect: room failed");
    expect(explainMediaFailure(room, "10.1.0.2", HELP).message).toContain(HELP);
  });

  it("a socket to an emulator on every interface that cannot be made from another host ends at once, saying why", () => {
    const error = neverReachable("ws://0.0.0.0:8123", "ws://10.1.0.1:8123", "10.1.0.1", HELP);
    expect(error).toBeInstanceOf(ConnectionLost);
    expect(error!.message).toBe(`Could not connect to 10.1.0.1:8123. ${HELP}`);
    expect(neverReachable("ws://0.0.0.0:8123", "ws://localhost:8123", "localhost", HELP)).toBeNull(); // local page
    expect(neverReachable("ws://10.0.0.5:8123", "ws://10.0.0.5:8123", "10.1.0.1", HELP)).toBeNull(); // not a wildcard
    expect(neverReachable("ws://0.0.0.0:8123", "ws://10.1.0.1:8123", "10.1.0.1", "")).toBeNull(); // no help: not beside
  });

  it("the signaling link ends such a session without a retry or a second credential", async () => {
    const clock = new FakeClock();
    const session = new Session({ prompt: "Anime" });
    session.start(0);
    const failures: Error[] = [];
    const sockets: { onclose: ((event: CloseEvent) => void) | null }[] = [];
    let credentials = 0;
    const modes = defaultSignalingModes((url) => {
      const socket = { readyState: 0, url, send() {}, close() {}, onopen: null, onmessage: null, onclose: null, onerror: null };
      sockets.push(socket);
      return socket;
    }, () => "10.1.0.1");
    const link = new SignalingLink({
      clock: clockOf(clock),
      toCore: (input) => void input(session, clock.now),
      mode: () => modes["direct"],
      target: () => ({ model: "lucy-2.1", realtimeUrl: "", remoteHelp: HELP }),
      requestCredential: () => {
        credentials++;
        return Promise.resolve({ apiKey: "ek_1", realtimeUrl: "ws://0.0.0.0:8123" });
      },
      kernel: { send: () => {}, listen: () => () => {} },
      fail: (error) => failures.push(error),
      connecting: () => {},
    });
    link.connect(0);
    await flush();
    expect(sockets).toHaveLength(1);
    sockets[0]!.onclose?.({ code: 1006, reason: "" } as CloseEvent); // refused: never opened
    await flush();
    clock.advance(60_000);
    await flush();
    expect(failures.map((error) => error.message)).toEqual([`Could not connect to 10.1.0.1:8123. ${HELP}`]);
    expect(credentials).toBe(1);
    expect(sockets).toHaveLength(1);
  });

  it("a server bound to every interface is reached at the page's own host, never at 0.0.0.0", () => {
    expect(fillWildcardHost("ws://0.0.0.0:8123", "10.1.0.2")).toBe("ws://10.1.0.2:8123");
    expect(fillWildcardHost("ws://[::]:8123/v1/stream", "fd00::2")).toBe("ws://[fd00::2]:8123/v1/stream");
    expect(fillWildcardHost("ws://0.0.0.0:8123", "")).toBe("ws://127.0.0.1:8123");
    expect(fillWildcardHost("ws://10.0.0.5:8123", "10.1.0.2")).toBe("ws://10.0.0.5:8123");
    expect(fillWildcardHost("ws://0.0.0.01:8123", "h")).toBe("ws://0.0.0.01:8123");
    const opened: string[] = [];
    const mode = defaultSignalingModes((url) => {
      opened.push(url);
      return { readyState: 0, send() {}, close() {}, onopen: null, onmessage: null, onclose: null, onerror: null };
    }, () => "jupyter.example.org")["direct"]!;
    mode.connect({ model: "m", realtimeUrl: "", credential: { apiKey: "ek", realtimeUrl: "ws://0.0.0.0:8123" } }).open();
    expect(opened).toEqual(["ws://jupyter.example.org:8123/v1/stream?api_key=ek&model=m"]);
  });
});
