// The front end's shape, as docs/architecture.md describes it: the signaling modes are objects,
// so no module outside them branches on a mode's name.
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const SRC = new URL("../src/", import.meta.url);
const MODE_OBJECTS = new Set(["transports.ts", "kernel_transport.ts"]);
const NAME = String.raw`["'](?:direct|kernel|proxy)["']`;
const COMPARISON = new RegExp(String.raw`(?:[!=]==?\s*${NAME})|(?:${NAME}\s*[!=]==?)|(?:case\s+${NAME})`);

describe("front-end structure", () => {
  it("no module outside the mode objects compares a signaling mode's name", () => {
    const offending: string[] = [];
    for (const file of readdirSync(SRC).filter((name) => name.endsWith(".ts"))) {
      if (MODE_OBJECTS.has(file)) continue;
      readFileSync(new URL(file, SRC), "utf8")
        .split("\n")
        .forEach((line, index) => {
          if (COMPARISON.test(line)) offending.push(`${file}:${index + 1}: ${line.trim()}`);
        });
    }
    expect(offending).toEqual([]);
  });

  it("the check sees a comparison when there is one", () => {
    expect(COMPARISON.test(`if (this.model.get("signaling") === "kernel") {`)).toBe(true);
    expect(COMPARISON.test(`case 'proxy':`)).toBe(true);
    expect(COMPARISON.test(`override readonly kind = "kernel";`)).toBe(false);
  });
});
