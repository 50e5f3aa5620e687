// The front end of `SessionView` (decart_widget/widget/_session_view.py), its own small ESM
// (static/session_view.js): a canvas showing frames sent from Python, e.g. a headless
// `RealtimeSession`'s transformed output (`session.show()`), with no camera and no session of
// its own. Each view opens the kernel's frame feed (frame_sink.ts); the last one shown is live.

import type { Render } from "@anywidget/types";
import { FrameSink } from "./frame_sink";
import type { KernelChannel } from "./transports";

const STYLE = "display:block;max-width:100%;height:auto;background:#111;border-radius:6px";

const render: Render<Record<string, never>> = ({ model, el }) => {
  const canvas = document.createElement("canvas");
  canvas.className = "dw-session-view";
  canvas.style.cssText = STYLE;
  const caption = document.createElement("div");
  caption.className = "dw-session-view-caption";
  caption.style.cssText = "font:12px sans-serif;color:#888;margin-top:4px";
  caption.textContent = "Waiting for frames…";
  el.append(canvas, caption);
  const kernel: KernelChannel = {
    send: (content, buffers) => model.send(content, undefined, buffers),
    listen: (handler) => {
      const listener = (content: unknown, buffers?: unknown[]): void => handler(content, buffers ?? []);
      model.on("msg:custom", listener);
      return () => model.off("msg:custom", listener);
    },
  };
  const sink = new FrameSink(kernel, { width: 0, height: 0 }, canvas, () => {
    caption.textContent = sink.over ?? `${canvas.width} × ${canvas.height}`;
  });
  return () => sink.close();
};

export default { render };
