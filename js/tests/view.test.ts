// @vitest-environment happy-dom
import { afterEach, describe, expect, it } from "vitest";
import widget from "../src/index";
import { Controller } from "../src/controller";
import { PREVIEW_HOLD_MS } from "../src/source_manager";
import { kernelSignalingMode } from "../src/kernel_transport";
import type { WidgetTraits } from "../src/traits";
import { View } from "../src/view";
import { FakeModel, flush, world } from "./fakes";

const views: View[] = [];

function mount(traits: Partial<WidgetTraits> = {}) {
  const fakes = world();
  fakes.deps.signalingModes = { ...fakes.deps.signalingModes, kernel: kernelSignalingMode() };
  const model = new FakeModel(traits);
  const controller = new Controller(model.asModel(), fakes.deps);
  const view = new View(model.asModel(), controller);
  document.body.append(view.root);
  views.push(view);
  const $ = <T extends Element = HTMLElement>(selector: string) => view.root.querySelector(selector) as T;
  return { ...fakes, model, controller, view, $ };
}

afterEach(() => {
  for (const view of views.splice(0)) view.destroy();
  document.body.innerHTML = "";
});

describe("View", () => {
  it("renders the controls under one root class", () => {
    const { view, $ } = mount({ note: "local emulator (no DECART_API_KEY)" });
    expect(view.root.classList.contains("decart-widget")).toBe(true);
    expect(view.root.querySelectorAll(".dw-pane")).toHaveLength(2);
    expect(view.root.querySelectorAll("video")).toHaveLength(0); // a pane gets one with a stream
    expect($(".dw-pill").textContent).toBe("Stopped");
    expect($(".dw-start").textContent).toBe("Start");
    expect($(".dw-overlay").textContent).toBe("Start camera");
    expect($<HTMLInputElement>(".dw-prompt").value).toBe("Anime");
    expect($(".dw-note").textContent).toBe("local emulator (no DECART_API_KEY)");
    expect($<HTMLDivElement>(".dw-banner").hidden).toBe(true);
  });

  it("applies the prompt on Enter and on blur, not on every key", () => {
    const { model, $ } = mount();
    const input = $<HTMLInputElement>(".dw-prompt");
    input.value = "Pencil sketch";
    input.dispatchEvent(new Event("input"));
    expect(model.get("prompt")).toBe("Anime");
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    expect(model.get("prompt")).toBe("Pencil sketch");
    input.value = "Noir";
    input.dispatchEvent(new Event("blur"));
    expect(model.get("prompt")).toBe("Noir");
    expect(model.saves).toBeGreaterThanOrEqual(2);
  });

  it("follows prompt and enhance changes from Python", () => {
    const { model, $ } = mount();
    model.pythonSets("prompt", "Invert colours");
    model.pythonSets("enhance", false);
    expect($<HTMLInputElement>(".dw-prompt").value).toBe("Invert colours");
    expect($<HTMLInputElement>(".dw-enhance input").checked).toBe(false);
    $<HTMLInputElement>(".dw-enhance input").click();
    expect(model.get("enhance")).toBe(true);
  });

  it("the start button starts and stops the session; the pill follows", async () => {
    const { model, $, sources } = mount();
    $<HTMLButtonElement>(".dw-start").click();
    await flush();
    expect(sources).toHaveLength(1);
    expect(model.get("connection_state")).toBe("connecting");
    expect($(".dw-pill").textContent).toBe("Connecting…");
    expect($(".dw-start").textContent).toBe("Stop");
    expect($<HTMLButtonElement>(".dw-overlay").hidden).toBe(true);
    $<HTMLButtonElement>(".dw-start").click();
    expect(model.get("connection_state")).toBe("disconnected");
    expect($(".dw-pill").textContent).toBe("Stopped");
    expect(sources[0]!.stopped).toBe(true);
  });

  it("panes hold a video only while it has a stream", async () => {
    const { model, $, sources, transports, peers } = mount();
    const video = (pane: string) => $<HTMLVideoElement>(`.dw-${pane} video`);
    $<HTMLButtonElement>(".dw-start").click();
    await flush();
    expect(sources).toHaveLength(1);
    expect(video("input")).toBeNull(); // the preview waits for the output (PREVIEW_HOLD_MS)
    expect(video("output")).toBeNull();
    const request = model.fromFront.find((m) => (m as { type: string }).type === "token_request") as { id: number };
    model.fromKernel({ type: "token", id: request.id, api_key: "ek_test" });
    await flush();
    transports[0]!.accept();
    transports[0]!.deliver({ type: "prompt_ack", prompt: "Anime", success: true });
    peers[0]!.events.offer("v=0 offer");
    expect(video("output")).toBeNull();
    const remote = new MediaStream();
    peers[0]!.events.remoteStream(remote);
    expect(video("output")?.srcObject).toBe(remote);
    expect(video("input")?.srcObject).toBe(sources[0]!.stream);
    $<HTMLButtonElement>(".dw-start").click();
    expect(video("input")).toBeNull();
    expect(video("output")).toBeNull();
  });

  it("shows the preview after PREVIEW_HOLD_MS when the output is slow, and hides it on stop", async () => {
    const { $, sources, clock } = mount();
    const input = () => $<HTMLVideoElement>(".dw-input video");
    $<HTMLButtonElement>(".dw-start").click();
    await flush();
    const waiting = $<HTMLDivElement>(".dw-input .dw-placeholder");
    clock.advance((PREVIEW_HOLD_MS - 1) / 1000);
    expect(input()).toBeNull();
    expect(waiting.hidden).toBe(false); // never a blank pane while the camera is on
    expect(waiting.textContent).toMatch(/Shown with the transformed video/);
    clock.advance(1 / 1000);
    expect(input()?.srcObject).toBe(sources[0]!.stream);
    expect(waiting.hidden).toBe(true);
    $<HTMLButtonElement>(".dw-start").click();
    expect(input()).toBeNull();
    $<HTMLButtonElement>(".dw-start").click(); // a new start holds it back again
    await flush();
    expect(input()).toBeNull();
  });

  it("the overlay click starts the camera", async () => {
    const { $, sources } = mount();
    $<HTMLButtonElement>(".dw-overlay").click();
    await flush();
    expect(sources).toHaveLength(1);
  });

  it("shows errors with a hint, and dismisses them", () => {
    const { model, $ } = mount();
    model.pythonSets("last_error", "Concurrent session limit reached.");
    model.pythonSets("last_error_kind", "concurrency");
    expect($<HTMLDivElement>(".dw-banner").hidden).toBe(false);
    expect($(".dw-banner-text").textContent).toBe("Concurrent session limit reached.");
    expect($(".dw-banner-hint").textContent).toMatch(/Another session/);
    expect($(".dw-pill").textContent).toBe("Error");
    $<HTMLButtonElement>(".dw-dismiss").click();
    expect(model.get("last_error")).toBe("");
    expect($<HTMLDivElement>(".dw-banner").hidden).toBe(true);
  });

  it("shows the usage seconds", () => {
    const { model, $ } = mount({ connection_state: "disconnected" });
    model.pythonSets("generation_seconds", 75);
    expect($(".dw-usage").textContent).toBe("1:15 used");
  });

  it("clears the reference image", () => {
    const { model, $ } = mount({ image: new DataView(new Uint8Array([1, 2]).buffer) });
    expect($<HTMLImageElement>(".dw-thumb").hidden).toBe(false);
    $<HTMLButtonElement>(".dw-image button:nth-of-type(2)").click();
    expect(model.get("image")).toBeNull();
    expect($<HTMLImageElement>(".dw-thumb").hidden).toBe(true);
  });

  it("kernel signaling: the prompt box asks the kernel with one message; the model follows the kernel", () => {
    const { model, $ } = mount({ signaling: "kernel" });
    const input = $<HTMLInputElement>(".dw-prompt");
    input.value = "Pencil sketch";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    input.dispatchEvent(new Event("blur")); // the same text: not asked twice
    expect(model.fromFront).toEqual([{ type: "set", state: { prompt: "Pencil sketch" }, buffer_keys: [] }]);
    expect(model.saves).toBe(0);
    expect(model.reports).toEqual([]);
    // the kernel sets the traitlet; until its update comes, the box keeps what was typed
    expect(model.get("prompt")).toBe("Anime");
    model.pythonSets("stats", { fps_in: 30 });
    expect(input.value).toBe("Pencil sketch");
    model.pythonSets("prompt", "Pencil sketch");
    expect(input.value).toBe("Pencil sketch");
    model.pythonSets("prompt", "Invert colours"); // later changes from Python still show
    expect(input.value).toBe("Invert colours");
  });

  it("kernel signaling: enhance and the image go through the kernel too; a refusal shows the model again", () => {
    const { model, $ } = mount({ signaling: "kernel", image: new DataView(new Uint8Array([1, 2]).buffer) });
    const enhance = $<HTMLInputElement>(".dw-enhance input");
    enhance.click();
    model.pythonSets("stats", { fps_in: 30 });
    expect(enhance.checked).toBe(false);
    expect(model.get("enhance")).toBe(true);
    $<HTMLButtonElement>(".dw-image button:nth-of-type(2)").click();
    expect(model.fromFront).toEqual([
      { type: "set", state: { enhance: false }, buffer_keys: [] },
      { type: "set", state: { image: null }, buffer_keys: [] },
    ]);
    expect(model.get("image")).not.toBeNull();
    const input = $<HTMLInputElement>(".dw-prompt");
    input.value = "x".repeat(20);
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    model.pythonSets("last_error", "prompt is too long"); // the kernel refused it
    expect(input.value).toBe("Anime");
    expect(enhance.checked).toBe(true);
    expect(model.saves).toBe(0);
  });

  it("destroy detaches from the model and the controller", () => {
    const { model, view, controller } = mount();
    const before = model.listenerCount();
    view.destroy();
    views.splice(views.indexOf(view), 1);
    expect(model.listenerCount()).toBeLessThan(before);
    expect(view.root.isConnected).toBe(false);
    controller.dispose();
    expect(model.listenerCount()).toBe(0);
  });
});

describe("the anywidget entry", () => {
  it("initialize returns a cleanup at once; views of one model share its session", async () => {
    const model = new FakeModel();
    // anywidget hands initialize and each render a different proxy of the same model
    const proxy = () => new Proxy(model, {}).asModel();
    const entry = widget();
    const cleanup = (await entry.initialize({ model: proxy(), signal: new AbortController().signal, experimental: {} as never })) as () => void;
    expect(typeof cleanup).toBe("function");
    const first = document.createElement("div");
    const second = document.createElement("div");
    const renderProps = (el: HTMLElement) => ({ model: proxy(), el, signal: new AbortController().signal, host: {} as never, experimental: {} as never });
    const removeFirst = (await entry.render(renderProps(first))) as () => void;
    const removeSecond = (await entry.render(renderProps(second))) as () => void;
    expect(first.querySelector(".decart-widget")).not.toBeNull();
    expect(second.querySelector(".decart-widget")).not.toBeNull();
    model.pythonSets("last_error", "Boom");
    expect(first.querySelector(".dw-banner-text")!.textContent).toBe("Boom");
    expect(second.querySelector(".dw-banner-text")!.textContent).toBe("Boom");
    removeFirst();
    removeSecond();
    expect(first.querySelector(".decart-widget")).toBeNull();
    cleanup();
    // one controller served both views: disposing it leaves no listener behind
    expect(model.listenerCount()).toBe(0);
  });
});
