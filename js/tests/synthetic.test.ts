import { describe, expect, it } from "vitest";
import { drawSegments, drawSynthetic } from "../src/synthetic";

/** A 2D context that records what is drawn. */
function recorder(width = 1088, height = 624) {
  const rects: { x: number; y: number; w: number; h: number; style: unknown }[] = [];
  const arcs: { x: number; y: number; r: number }[] = [];
  const gradients: string[][] = [];
  const ctx = {
    canvas: { width, height },
    fillStyle: "" as unknown,
    fillRect(x: number, y: number, w: number, h: number) {
      rects.push({ x, y, w, h, style: this.fillStyle });
    },
    createLinearGradient() {
      const stops: string[] = [];
      gradients.push(stops);
      return { addColorStop: (_offset: number, colour: string) => stops.push(colour) };
    },
    beginPath() {},
    arc(x: number, y: number, r: number) {
      arcs.push({ x, y, r });
    },
    fill() {},
    fillText() {
      throw new Error("the pattern draws no text");
    },
  };
  return { ctx: ctx as unknown as CanvasRenderingContext2D, rects, arcs, gradients };
}

describe("the synthetic pattern", () => {
  it("fills the frame with a two-colour gradient, draws a ball and the clock, no text", () => {
    const { ctx, rects, arcs, gradients } = recorder();
    drawSynthetic(ctx, 0);
    expect(rects[0]).toMatchObject({ x: 0, y: 0, w: 1088, h: 624 });
    expect(gradients).toHaveLength(1);
    expect(new Set(gradients[0]).size).toBe(2);
    expect(arcs).toHaveLength(1);
    // "0.0": two zeros of six segments each and a point
    expect(rects.slice(1)).toHaveLength(13);
  });

  it("moves: the colours turn and the ball travels", () => {
    const a = recorder();
    const b = recorder();
    drawSynthetic(a.ctx, 0);
    drawSynthetic(b.ctx, 2);
    expect(b.gradients[0]).not.toEqual(a.gradients[0]);
    const [ballA, ballB] = [a.arcs[0]!, b.arcs[0]!];
    expect(Math.hypot(ballB.x - ballA.x, ballB.y - ballA.y)).toBeGreaterThan(100);
  });

  it("draws each digit with its seven-segment count, left to right", () => {
    const counts: Record<string, number> = { "0": 6, "1": 2, "2": 5, "3": 5, "4": 4, "5": 5, "6": 6, "7": 3, "8": 7, "9": 6 };
    for (const [digit, segments] of Object.entries(counts)) {
      const { ctx, rects } = recorder();
      drawSegments(ctx, digit, 0, 0, 60);
      expect(rects, digit).toHaveLength(segments);
      for (const r of rects) {
        expect(r.x >= 0 && r.y >= 0 && r.x + r.w <= 33 && r.y + r.h <= 60, digit).toBe(true);
      }
    }
    const { ctx, rects } = recorder();
    drawSegments(ctx, "12.5", 100, 10, 60);
    expect(rects).toHaveLength(2 + 5 + 1 + 5);
    expect(Math.min(...rects.map((r) => r.x))).toBeGreaterThanOrEqual(100);
    expect(rects.at(-1)!.x).toBeGreaterThan(rects[0]!.x);
  });
});
