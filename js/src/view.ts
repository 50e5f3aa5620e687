// One rendering of the widget in an output cell. Views only show: the controller owns the
// session, the source and the peer, so several views of one widget share them.

import { MAX_IMAGE_BYTES, toBytes } from "./bytes";
import type { Controller } from "./controller";
import { debug } from "./log";
import { present, type ViewInput } from "./present";
import type { Stats } from "./stats";
import type { WidgetModel, WidgetTraits } from "./traits";
import { saveAndReport } from "./sync";

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  children: Node[] = [],
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  element.className = className;
  Object.assign(element, props);
  element.append(...children);
  return element;
}

/** Write a DOM property only when it changes: a same-value write still costs style and layout. */
function put<T extends object, K extends keyof T>(target: T, key: K, value: T[K]): void {
  if (target[key] !== value) target[key] = value;
}

function videoElement(className: string): HTMLVideoElement {
  const video = h("video", className, { autoplay: true, muted: true, playsInline: true });
  video.setAttribute("playsinline", "");
  return video;
}

/**
 * Show `stream` in `pane`. The <video> is in the page only while it has a stream: the first video
 * element of a page costs tens of milliseconds of style and layout (the media controls' style
 * sheet), which a widget that is not playing yet should not pay, nor a starting session wait for.
 */
function attach(pane: HTMLElement, video: HTMLVideoElement, stream: MediaStream | null): void {
  if (stream && !video.isConnected) pane.prepend(video);
  if (video.srcObject !== stream) {
    try {
      video.srcObject = stream;
      if (stream) video.play().catch(() => {}); // autoplay rules: muted video may play
    } catch (error) {
      debug("cannot show the stream:", error);
    }
  }
  if (!stream) video.remove();
}

export class View {
  readonly root: HTMLDivElement;
  private readonly pill = h("span", "dw-pill");
  private readonly usage = h("span", "dw-usage");
  private readonly stats = h("span", "dw-stats");
  private readonly note = h("span", "dw-note");
  private readonly bannerText = h("span", "dw-banner-text");
  private readonly bannerHint = h("span", "dw-banner-hint");
  private readonly banner: HTMLDivElement;
  private readonly inputVideo = videoElement("dw-video");
  private readonly outputVideo = videoElement("dw-video");
  private readonly inputPane: HTMLElement;
  private readonly outputPane: HTMLElement;
  private readonly overlay = h("button", "dw-overlay", { type: "button" });
  private readonly placeholder = h("div", "dw-placeholder");
  private readonly inputPlaceholder = h("div", "dw-placeholder");
  private readonly prompt = h("input", "dw-prompt", {
    type: "text",
    placeholder: "Describe a style, e.g. Anime style — Enter to apply",
  });
  private readonly enhance = h("input", "", { type: "checkbox" });
  private readonly thumb = h("img", "dw-thumb", { alt: "reference image" });
  private readonly clearImage = h("button", "dw-button", { type: "button", textContent: "Clear" });
  private readonly fileInput = h("input", "", { type: "file", accept: "image/*", hidden: true });
  private readonly device = h("select", "dw-device", { title: "Camera" });
  private readonly startButton = h("button", "dw-button dw-start", { type: "button" });
  private readonly cleanups: (() => void)[] = [];
  private thumbUrl: string | null = null;
  /** Kernel signaling: what this view asked the kernel to set and the model does not show yet. */
  private readonly requested: { prompt?: string; enhance?: boolean } = {};

  constructor(
    private readonly model: WidgetModel,
    private readonly controller: Controller,
  ) {
    const dismiss = h("button", "dw-dismiss", { type: "button", title: "Dismiss", textContent: "×" });
    this.banner = h("div", "dw-banner", { role: "alert" }, [
      h("div", "dw-banner-body", {}, [this.bannerText, this.bannerHint]),
      dismiss,
    ]);
    const upload = h("button", "dw-button", { type: "button", textContent: "Image…", title: "Reference image (or drop one here)" });
    this.inputPane = h("figure", "dw-pane dw-input", {}, [
      this.overlay,
      this.inputPlaceholder,
      h("figcaption", "", { textContent: "Input" }),
    ]);
    this.outputPane = h("figure", "dw-pane dw-output", {}, [this.placeholder, h("figcaption", "", { textContent: "Output" })]);
    this.root = h("div", "decart-widget", {}, [
      h("div", "dw-header", {}, [this.pill, this.usage, this.stats, this.note]),
      this.banner,
      h("div", "dw-stage", {}, [this.inputPane, this.outputPane]),
      h("div", "dw-controls", {}, [
        this.prompt,
        h("label", "dw-enhance", { title: "Let the service enrich the prompt" }, [this.enhance, document.createTextNode(" Enhance")]),
        h("span", "dw-image", {}, [this.thumb, upload, this.clearImage, this.fileInput]),
        this.device,
        this.startButton,
      ]),
    ]);

    this.listen(this.startButton, "click", () => this.toggle());
    this.listen(this.overlay, "click", () => void controller.start());
    this.listen(dismiss, "click", () => controller.dismissError());
    this.listen(this.prompt, "keydown", (event) => {
      if ((event as KeyboardEvent).key === "Enter") this.commitPrompt();
    });
    this.listen(this.prompt, "blur", () => this.commitPrompt());
    this.listen(this.enhance, "change", () => this.save("enhance", this.enhance.checked));
    this.listen(upload, "click", () => this.fileInput.click());
    this.listen(this.fileInput, "change", () => {
      const file = this.fileInput.files?.[0];
      this.fileInput.value = "";
      if (file) void this.setImageFile(file);
    });
    this.listen(this.clearImage, "click", () => this.save("image", null));
    this.listen(this.device, "change", () => this.save("device_id", this.device.value));
    this.listen(this.root, "dragover", (event) => {
      event.preventDefault();
      this.root.classList.add("dw-dragging");
    });
    this.listen(this.root, "dragleave", () => this.root.classList.remove("dw-dragging"));
    this.listen(this.root, "drop", (event) => {
      event.preventDefault();
      this.root.classList.remove("dw-dragging");
      const file = (event as DragEvent).dataTransfer?.files?.[0];
      if (file) void this.setImageFile(file);
    });

    // the kernel answered a `set` (its update, or an error when it refused the value)
    const settled: [string, () => void][] = [
      ["change:prompt", () => delete this.requested.prompt],
      ["change:enhance", () => delete this.requested.enhance],
      [
        "change:last_error",
        () => {
          delete this.requested.prompt;
          delete this.requested.enhance;
        },
      ],
    ];
    for (const [event, handler] of settled) model.on(event, handler);
    this.cleanups.push(() => settled.forEach(([event, handler]) => model.off(event, handler)));

    // a view that fails to draw must not break the session that notified it
    const onChange = (): void => {
      try {
        this.update();
      } catch (error) {
        debug("view update failed:", error);
      }
    };
    const modelEvents = [
      "change:connection_state",
      "change:generation_seconds",
      "change:last_error",
      "change:last_error_kind",
      "change:stats",
      "change:queue_position",
      "change:queue_size",
      "change:note",
      "change:source",
      "change:prompt",
      "change:enhance",
      "change:device_id",
    ];
    for (const event of modelEvents) model.on(event, onChange);
    const onImage = (): void => this.updateThumb();
    model.on("change:image", onImage);
    const unsubscribe = controller.subscribe(onChange);
    this.cleanups.push(() => {
      for (const event of modelEvents) model.off(event, onChange);
      model.off("change:image", onImage);
      unsubscribe();
    });
    this.updateThumb();
    this.update();
  }

  destroy(): void {
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    attach(this.inputPane, this.inputVideo, null);
    attach(this.outputPane, this.outputVideo, null);
    if (this.thumbUrl) URL.revokeObjectURL(this.thumbUrl);
    this.thumbUrl = null;
    this.root.remove();
  }

  update(): void {
    const controller = this.controller;
    const source = this.model.get("source") || "camera";
    const view = present({
      state: controller.state,
      starting: controller.starting,
      lastError: this.model.get("last_error") ?? "",
      lastErrorKind: this.model.get("last_error_kind") ?? "",
      seconds: this.model.get("generation_seconds") ?? 0,
      stats: (this.model.get("stats") ?? null) as Partial<Stats> | null,
      source,
      hasRemote: controller.remoteStream !== null,
      hasPreview: controller.previewStream !== null,
      queue: queueOf(this.model.get("queue_position"), this.model.get("queue_size")),
    });
    put(this.pill, "textContent", view.pill.text);
    put(this.pill, "className", `dw-pill dw-tone-${view.pill.tone}`);
    put(this.root.dataset, "state", controller.state);
    const spec = this.model.get("model_spec");
    const aspect = spec?.width && spec.height ? `${spec.width} / ${spec.height}` : "";
    if (aspect && this.root.style.getPropertyValue("--dw-aspect") !== aspect) {
      this.root.style.setProperty("--dw-aspect", aspect);
    }
    put(this.usage, "textContent", view.usage);
    put(this.stats, "textContent", view.stats);
    put(this.note, "textContent", this.model.get("note") ?? "");
    put(this.banner, "hidden", view.banner === null);
    put(this.bannerText, "textContent", view.banner?.message ?? "");
    put(this.bannerHint, "textContent", view.banner?.hint ?? "");
    put(this.bannerHint, "hidden", !view.banner?.hint);
    put(this.startButton, "textContent", view.button.label);
    put(this.startButton.dataset, "action", view.button.action);
    put(this.overlay, "hidden", view.overlay === null);
    put(this.overlay, "textContent", view.overlay ?? "");
    put(this.placeholder, "hidden", view.outputPlaceholder === "");
    put(this.placeholder, "textContent", view.outputPlaceholder);
    put(this.inputPlaceholder, "hidden", view.inputPlaceholder === "");
    put(this.inputPlaceholder, "textContent", view.inputPlaceholder);
    if (document.activeElement !== this.prompt) put(this.prompt, "value", this.currentPrompt());
    put(this.enhance, "checked", this.requested.enhance ?? this.model.get("enhance") ?? true);
    attach(this.inputPane, this.inputVideo, controller.previewStream);
    attach(this.outputPane, this.outputVideo, controller.remoteStream);
    put(this.device, "hidden", source !== "camera" || !this.device.options.length);
    if (source === "camera" && controller.localStream) void this.fillDevices();
  }

  private toggle(): void {
    if (this.startButton.dataset["action"] === "stop") this.controller.stop();
    else void this.controller.start();
  }

  private commitPrompt(): void {
    const text = this.prompt.value.trim();
    if (text !== this.currentPrompt()) this.save("prompt", text);
  }

  private currentPrompt(): string {
    return this.requested.prompt ?? this.model.get("prompt") ?? "";
  }

  private async setImageFile(file: Blob): Promise<void> {
    if (file.size > MAX_IMAGE_BYTES) {
      this.model.set("last_error", `The image is ${(file.size / 1024 / 1024).toFixed(1)} MB; the limit is 10 MB.`);
      this.model.set("last_error_kind", "invalid_input");
      saveAndReport(this.model, ["last_error", "last_error_kind"]);
      return;
    }
    this.save("image", new DataView(await file.arrayBuffer()));
  }

  private updateThumb(): void {
    if (this.thumbUrl) URL.revokeObjectURL(this.thumbUrl);
    const bytes = toBytes(this.model.get("image"));
    this.thumbUrl = bytes?.byteLength ? URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>])) : null;
    this.thumb.hidden = this.clearImage.hidden = this.thumbUrl === null;
    if (this.thumbUrl) this.thumb.src = this.thumbUrl;
    else this.thumb.removeAttribute("src");
  }

  /** Device labels are only readable once the camera runs. */
  private async fillDevices(): Promise<void> {
    if (this.device.options.length) return;
    const cameras = await this.controller.listCameras().catch(() => []);
    if (this.device.options.length) return;
    const selected = this.model.get("device_id") ?? "";
    this.device.append(h("option", "", { value: "", textContent: "Default camera" }));
    cameras.forEach((camera, index) => {
      this.device.append(h("option", "", { value: camera.deviceId, textContent: camera.label || `Camera ${index + 1}` }));
    });
    this.device.value = selected;
    this.device.hidden = this.model.get("source") !== "camera";
  }

  private save<K extends keyof WidgetTraits>(key: K, value: WidgetTraits[K]): void {
    if (!this.controller.edit(key, value)) return;
    // the kernel was asked to set it; the box shows it until the model follows (src/sync.ts)
    if (key === "prompt") this.requested.prompt = value as string;
    if (key === "enhance") this.requested.enhance = value as boolean;
  }

  private listen(target: EventTarget, event: string, handler: (event: Event) => void): void {
    target.addEventListener(event, handler);
    this.cleanups.push(() => target.removeEventListener(event, handler));
  }
}

function queueOf(position: number | null | undefined, size: number | null | undefined): ViewInput["queue"] {
  return typeof position === "number" ? { position, size: size ?? null } : null;
}
