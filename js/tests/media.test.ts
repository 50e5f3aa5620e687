import { afterEach, describe, expect, it, vi } from "vitest";
import { fromBase64, toBase64, toBytes } from "../src/bytes";
import * as captureSources from "../src/capture_sources";
import { describeCaptureFailure } from "../src/capture_sources";
import { MediaError } from "../src/errors";
import { HeldPeerEvents, preferCodec, turnServer } from "../src/peer";
import { cameraConstraints, captureUnavailable, createSourceOpener, type MediaEnvironment } from "../src/sources";

const browser: MediaEnvironment = { hasMediaDevices: true, secureContext: true, vscode: false };
const options = { width: 1088, height: 624, fps: 30, deviceId: "", mirror: false, video: null };
const domError = (name: string) => Object.assign(new Error(`${name} happened`), { name });

describe("sources", () => {
  it("asks the camera for the model's size and fps, and the chosen device", () => {
    expect(cameraConstraints(options)).toEqual({
      video: { width: { ideal: 1088 }, height: { ideal: 624 }, frameRate: { ideal: 30 } },
      audio: false,
    });
    expect(cameraConstraints({ ...options, deviceId: "cam-2" }).video).toMatchObject({ deviceId: { exact: "cam-2" } });
    // the camera traitlet's constraints join in, and override the model's size hints
    expect(
      cameraConstraints({ ...options, camera: { facingMode: "environment", width: { exact: 640 } } }).video,
    ).toMatchObject({ facingMode: "environment", width: { exact: 640 }, height: { ideal: options.height } });
  });

  it("says when capture cannot work here", () => {
    expect(captureUnavailable("camera", browser)).toBeNull();
    expect(captureUnavailable("synthetic", { ...browser, hasMediaDevices: false })).toBeNull();
    const insecure = captureUnavailable("camera", { ...browser, hasMediaDevices: false, secureContext: false });
    expect(insecure).toBeInstanceOf(MediaError);
    expect(insecure?.kind).toBe("insecure_context");
    expect(insecure?.message).toMatch(/HTTPS.*localhost/);
    const vscode = captureUnavailable("camera", { ...browser, vscode: true });
    expect(vscode?.kind).toBe("camera");
    expect(vscode?.message).toMatch(/VS Code.*source="video".*source="synthetic"/);
  });

  it.each([
    ["NotAllowedError", "permission", /permission denied/],
    ["SecurityError", "permission", /permission denied/],
    ["NotFoundError", "camera", /No camera found/],
    ["OverconstrainedError", "camera", /No camera found/],
    ["NotReadableError", "camera", /busy/],
    ["TypeError", "camera", /could not start/],
  ])("maps %s to %s", (name, kind, message) => {
    const error = describeCaptureFailure(domError(name), "camera", browser);
    expect(error.kind).toBe(kind);
    expect(error.message).toMatch(message);
  });

  it("maps a cancelled screen share to permission", () => {
    expect(describeCaptureFailure(domError("NotAllowedError"), "screen", browser).message).toMatch(/Screen sharing/);
  });
});

describe("the camera's rarer paths, in the capture asset", () => {
  afterEach(() => vi.unstubAllGlobals());

  const stopped: string[] = [];
  const cameraStream = (): MediaStream => {
    const track = { kind: "video", stop: () => stopped.push("camera") };
    return { getTracks: () => [track], getVideoTracks: () => [track] } as unknown as MediaStream;
  };
  const camera = (getUserMedia: () => Promise<MediaStream>): void => {
    vi.stubGlobal("navigator", { mediaDevices: { getUserMedia } });
  };
  const open = createSourceOpener(() => browser);

  it("a camera failure's words come from the capture asset", async () => {
    camera(() => Promise.reject(domError("NotAllowedError")));
    const asked: string[] = [];
    const load = async (name: string): Promise<unknown> => (asked.push(name), captureSources);
    await expect(open("camera", options, load)).rejects.toMatchObject({ kind: "permission", message: /permission denied/ });
    expect(asked).toEqual(["sources"]);
  });

  it("a camera failure still says what failed when the asset cannot load", async () => {
    camera(() => Promise.reject(domError("NotReadableError")));
    const load = async (): Promise<unknown> => Promise.reject(new Error("kernel gone"));
    await expect(open("camera", options, load)).rejects.toMatchObject({ kind: "camera", message: /could not start \(NotReadableError\)/ });
  });

  it("a mirrored camera is drawn by the asset; the camera is released if the asset cannot load", async () => {
    camera(async () => cameraStream());
    const mirrored = { stream: {}, track: {}, stop: () => {} };
    const mirror = vi.fn(async () => mirrored);
    await expect(open("camera", { ...options, mirror: true }, async () => ({ mirror }))).resolves.toBe(mirrored);
    expect(mirror).toHaveBeenCalledTimes(1);
    stopped.length = 0;
    const load = async (): Promise<unknown> => Promise.reject(new Error("kernel gone"));
    await expect(open("camera", { ...options, mirror: true }, load)).rejects.toThrow(/kernel gone/);
    expect(stopped).toEqual(["camera"]);
  });
});

describe("peer helpers", () => {
  it("puts VP8 first and keeps the rest", () => {
    const codecs = [
      { mimeType: "video/H264", clockRate: 90000 },
      { mimeType: "video/rtx", clockRate: 90000 },
      { mimeType: "video/VP8", clockRate: 90000 },
      { mimeType: "video/VP9", clockRate: 90000 },
    ];
    expect(preferCodec(codecs, "video/VP8").map((c) => c.mimeType)).toEqual([
      "video/VP8",
      "video/H264",
      "video/rtx",
      "video/VP9",
    ]);
  });

  it("turns an ice-restart turn_config into an RTCIceServer", () => {
    expect(turnServer({ server_url: "turn:t:3478", username: "u", credential: "c" })).toEqual({
      urls: "turn:t:3478",
      username: "u",
      credential: "c",
    });
  });
});

describe("bytes", () => {
  it("reads every binary form a host may give and round-trips base64", () => {
    const bytes = new Uint8Array([0, 1, 254, 255]);
    expect(toBytes(new DataView(bytes.buffer))).toEqual(bytes);
    expect(toBytes(bytes.buffer)).toEqual(bytes);
    expect(toBytes(null)).toBeNull();
    expect(toBase64(bytes)).toBe("AAH+/w==");
    expect(fromBase64("AAH+/w==")).toEqual(bytes);
    const large = new Uint8Array(100_000).map((_, i) => i % 256);
    const decoded = fromBase64(toBase64(large));
    expect(decoded.length === large.length && decoded.every((value, i) => value === large[i])).toBe(true);
  });
});

describe("HeldPeerEvents", () => {
  it("holds a peer's events until released, then delivers them in order and passes later ones on", () => {
    const held = new HeldPeerEvents();
    const seen: string[] = [];
    held.offer("v=0");
    held.candidate({ candidate: "candidate:1" });
    held.state("connecting");
    expect(seen).toEqual([]);
    held.release({
      offer: (sdp) => seen.push(`offer ${sdp}`),
      candidate: (candidate) => seen.push(`candidate ${candidate?.candidate ?? "end"}`),
      state: (state) => seen.push(`state ${state}`),
      remoteStream: () => seen.push("stream"),
    });
    expect(seen).toEqual(["offer v=0", "candidate candidate:1", "state connecting"]);
    held.candidate(null);
    held.remoteStream({} as MediaStream);
    expect(seen.slice(3)).toEqual(["candidate end", "stream"]);
  });
});
