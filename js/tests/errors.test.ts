import { describe, expect, it } from "vitest";
import {
  AuthenticationError,
  asError,
  MediaError,
  ConcurrencyLimit,
  DecartError,
  InsufficientCredits,
  InvalidInput,
  ModerationError,
  classify,
  fromKind,
  isPermanent,
} from "../src/errors";

describe("errors", () => {
  it.each([
    ["Invalid API key", AuthenticationError],
    ["401 Unauthorized", AuthenticationError],
    ["origin_not_allowed", AuthenticationError],
    ["token expired", AuthenticationError],
    ["insufficient_credits", InsufficientCredits],
    ["Concurrent session limit reached.", ConcurrencyLimit],
    ["Prompt rejected by moderation", ModerationError],
    ["invalid_model", InvalidInput],
    ["removed_model", InvalidInput],
    ["internal_error", DecartError],
  ])("classifies %s", (text, ErrorClass) => {
    const error = classify(text);
    expect(error).toBeInstanceOf(ErrorClass);
    expect(error.message).toBe(text);
  });

  it("knows which texts are permanent (docs/protocol.md)", () => {
    for (const text of ["401", "Unauthorized", "Invalid API key", "permission denied", "not allowed", "invalid session"]) {
      expect(isPermanent(text)).toBe(true);
    }
    for (const text of ["upstream_timeout", "model_server_disconnected", "internal_error", "server_shutdown"]) {
      expect(isPermanent(text)).toBe(false);
    }
  });

  it("has the same kinds as the Python taxonomy", () => {
    const kinds = ["authentication", "moderation", "credits", "concurrency", "ack_timeout", "connection", "session_ended", "invalid_input", "protocol"];
    for (const kind of kinds) expect(fromKind(kind, "m").kind).toBe(kind);
    expect(fromKind("authentication", "bad key").permanent).toBe(true);
    expect(fromKind("nonsense", "x")).toBeInstanceOf(DecartError);
    expect(fromKind("nonsense", "x").kind).toBe("error");
  });
});

describe("asError", () => {
  // an asset's bundle (sources.js, livekit.js) has its own copy of the error classes
  const foreign = (kind: string, message: string): Error => Object.assign(new Error(message), { kind });

  it("keeps the kind of an error made by an asset's copy of the classes", () => {
    const refused = asError(foreign("permission", "Camera permission denied"));
    expect(refused).toBeInstanceOf(MediaError);
    expect(refused).toMatchObject({ kind: "permission", message: "Camera permission denied", permanent: true });
    expect(asError(foreign("moderation", "blocked"))).toBeInstanceOf(ModerationError);
  });

  it("an unknown kind, a plain error or a thrown string is a plain DecartError", () => {
    expect(asError(foreign("weird", "x")).kind).toBe("error");
    expect(asError(new Error("boom"))).toMatchObject({ kind: "error", message: "boom" });
    expect(asError("text").message).toBe("text");
    const own = new InvalidInput("bad");
    expect(asError(own)).toBe(own);
  });
});
