// The anywidget entry. initialize() owns one controller (session, source, peer) per model and
// returns at once; render() only attaches a view, so every view of a widget shares the session.

import type { Initialize, Render } from "@anywidget/types";
import { Controller, type ControllerDeps } from "./controller";
import { kernelLossMessage, watchKernel } from "./host";
import { lazyFrames } from "./lazy_frames";
import { lazyMedia } from "./lazy_media";
import { createSourceOpener, listCameras } from "./sources";
import type { WidgetModel, WidgetTraits } from "./traits";
import { defaultSignalingModes } from "./transports";
import { View } from "./view";

// Every live controller in the page, so leaving the page can release them all.
const live = new Set<Controller>();

function browserDeps(): ControllerDeps {
  return {
    now: () => performance.now() / 1000,
    setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
    clearTimeout: (handle) => globalThis.clearTimeout(handle as number),
    signalingModes: defaultSignalingModes(),
    // each media transport is an asset of its own, asked of the kernel when a session needs it
    media: { webrtc: lazyMedia("webrtc"), livekit: lazyMedia("livekit") },
    openSource: createSourceOpener(),
    listCameras,
    frames: lazyFrames,
  };
}

// Leaving the page: release cameras and close peers and sockets before the page goes.
globalThis.addEventListener?.("pagehide", () => {
  for (const controller of live) controller.dispose();
  live.clear();
});

/**
 * anywidget calls this factory once per widget model, then `initialize` once and `render` once
 * per view. The model objects it passes to them are distinct proxies of one model, so the
 * controller is shared through this closure, never looked up by model identity.
 */
export default () => {
  let shared: Controller | null = null;
  const own = (model: WidgetModel): Controller => {
    if (!shared) {
      shared = new Controller(model, browserDeps());
      live.add(shared);
    }
    return shared;
  };

  const initialize: Initialize<WidgetTraits> = ({ model }) => {
    const controller = own(model);
    const unwatch = watchKernel(model.widget_manager, (loss) =>
      controller.kernelLost(kernelLossMessage(loss), loss === "closed"),
    );
    return () => {
      unwatch();
      controller.dispose();
      live.delete(controller);
      if (shared === controller) shared = null;
    };
  };

  const render: Render<WidgetTraits> = ({ model, el }) => {
    const controller = own(model); // initialize normally made it; a host may skip initialize
    const detach = controller.attachView();
    // before building the view: the token request and the source need not wait for it
    controller.autostart();
    const view = new View(model, controller);
    el.append(view.root);
    return () => {
      view.destroy();
      detach();
    };
  };

  return { initialize, render };
};
