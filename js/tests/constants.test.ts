// One source of protocol constants: decart_widget/protocol/constants.json, bundled from here.

import { describe, expect, it } from "vitest";
import { BACKOFF, decodedSize, END_REASONS, ERROR_KIND_NAMES, MAX_IMAGE_BYTES } from "../src/constants";
import { classify, ERROR_CLASSES } from "../src/errors";
import { END_REASONS as MESSAGE_END_REASONS } from "../src/messages";

describe("constants", () => {
  it("every error class has a kind in the data file and back", () => {
    expect(new Set(Object.keys(ERROR_CLASSES))).toEqual(new Set(ERROR_KIND_NAMES));
    for (const [kind, ErrorClass] of Object.entries(ERROR_CLASSES)) expect(new ErrorClass("x").kind).toBe(kind);
  });

  it("the messages module uses the data file's end reasons", () => {
    expect(MESSAGE_END_REASONS).toBe(END_REASONS);
  });

  it("classifies with the data file's markers", () => {
    expect(classify("Concurrent session limit reached.").kind).toBe("concurrency");
    expect(classify("origin not allowed").kind).toBe("authentication");
  });

  it("decodedSize matches real base64", () => {
    for (let size = 0; size < 40; size++) {
      const text = btoa("x".repeat(size));
      expect(decodedSize(text)).toBe(size);
    }
  });

  it("holds Decart's limits", () => {
    expect(MAX_IMAGE_BYTES).toBe(10 * 2 ** 20);
    expect(BACKOFF).toEqual([1, 2, 4, 8, 10]);
  });
});
