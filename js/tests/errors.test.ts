import { describe, expect, it } from "vitest";
import {
  AuthenticationError,
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
