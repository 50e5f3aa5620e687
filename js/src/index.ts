// The anywidget entry. initialize() owns one controller (session, source, peer) per model and
// returns at once; render() only attaches a view, so every view of a widget shares the session.

import type { Initialize, Render } from "@anywidget/types";
import { Controller, type ControllerDeps } from "./controller";
import { createBrowserPeer } from "./peer";
import { createSourceOpener, listCameras } from "./sources";
import type { WidgetTraits } from "./traits";
import { defaultSignalingModes } from "./transports";
import { View } from "./view";

const controllers = new Map<object, Controller>();

function browserDeps(): ControllerDeps {
  return {
    now: () => performance.now() / 1000,
    setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
    clearTimeout: (handle) => globalThis.clearTimeout(handle as number),
    signalingModes: defaultSignalingModes(),
    createPeer: createBrowserPeer,
    openSource: createSourceOpener(),
    listCameras,
  };
}

// Leaving the page: release cameras and close peers and sockets before the page goes.
function disposeAll(): void {
  for (const controller of controllers.values()) controller.dispose();
  controllers.clear();
}
globalThis.addEventListener?.("pagehide", disposeAll);

const initialize: Initialize<WidgetTraits> = ({ model }) => {
  const controller = new Controller(model, browserDeps());
  controllers.set(model, controller);
  return () => {
    controller.dispose();
    if (controllers.get(model) === controller) controllers.delete(model);
  };
};

const render: Render<WidgetTraits> = ({ model, el }) => {
  let controller = controllers.get(model);
  if (!controller) {
    // a host that skipped initialize: own the controller here instead
    controller = new Controller(model, browserDeps());
    controllers.set(model, controller);
  }
  const view = new View(model, controller);
  el.append(view.root);
  const detach = controller.attachView();
  controller.autostart();
  return () => {
    view.destroy();
    detach();
  };
};

export default { initialize, render };
