// The synthetic test pattern: a diagonal gradient whose hues turn, a white ball circling the
// frame, and the seconds since the start as a seven-segment clock. Colourful and moving, so the
// output shows at a glance what the model did and how far behind the input it runs.
//
// Drawn with fills only, no text: the first text a page draws loads a font, which costs a
// starting session several milliseconds on the main thread, right when the handshake needs it.

/** Segments a..g (bits 0..6) lit for each digit. */
const DIGITS = [0x3f, 0x06, 0x5b, 0x4f, 0x66, 0x6d, 0x7d, 0x07, 0x7f, 0x6f];

/** Draw `text` (digits and ".") as seven-segment digits `height` tall, from (x, y) top left. */
export function drawSegments(ctx: CanvasRenderingContext2D, text: string, x: number, y: number, height: number): void {
  const h = height;
  const w = Math.round(h * 0.55);
  const s = Math.max(2, Math.round(h / 7)); // stroke
  const v = (h - 3 * s) / 2; // length of a vertical segment
  // [x, y, width, height] of segments a..g within a digit
  const rects = [
    [s, 0, w - 2 * s, s],
    [w - s, s, s, v],
    [w - s, 2 * s + v, s, v],
    [s, h - s, w - 2 * s, s],
    [0, 2 * s + v, s, v],
    [0, s, s, v],
    [s, s + v, w - 2 * s, s],
  ] as const;
  for (const char of text) {
    if (char === ".") {
      ctx.fillRect(x, y + h - s, s, s);
      x += 2 * s;
      continue;
    }
    const lit = DIGITS[char.charCodeAt(0) - 48] ?? 0;
    rects.forEach(([rx, ry, rw, rh], index) => {
      if (lit & (1 << index)) ctx.fillRect(x + rx, y + ry, rw, rh);
    });
    x += w + s;
  }
}

/** One frame of the pattern, `t` seconds after the start. */
export function drawSynthetic(ctx: CanvasRenderingContext2D, t: number): void {
  const { width, height } = ctx.canvas;
  const hue = (t * 40) % 360;
  const gradient = ctx.createLinearGradient(0, 0, width, height);
  gradient.addColorStop(0, `hsl(${hue} 80% 55%)`);
  gradient.addColorStop(1, `hsl(${(hue + 140) % 360} 80% 35%)`);
  ctx.fillStyle = gradient;
  ctx.fillRect(0, 0, width, height);
  const radius = Math.min(width, height) / 6;
  const x = width / 2 + Math.cos(t * 1.3) * (width / 2 - radius);
  const y = height / 2 + Math.sin(t * 1.7) * (height / 2 - radius);
  ctx.fillStyle = "#fff";
  ctx.beginPath();
  ctx.arc(x, y, radius, 0, Math.PI * 2);
  ctx.fill();
  const digitHeight = Math.round(height / 10);
  ctx.fillStyle = "#000";
  drawSegments(ctx, t.toFixed(1), width / 20, height - height / 20 - digitHeight, digitHeight);
}
