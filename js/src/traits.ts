// The widget <-> kernel contract (docs/architecture.md): synced traitlets and custom messages.
// Names are shared with decart_widget/widget: do not rename.

import type { AnyModel } from "@anywidget/types";
import type { ConnectionState } from "./session";
import type { SourceKind } from "./sources";
import type { Stats } from "./stats";

export interface ModelSpec {
  name: string;
  width: number;
  height: number;
  fps: number;
}

export interface WidgetTraits {
  model: string;
  model_spec: ModelSpec | null;
  prompt: string;
  enhance: boolean;
  image: DataView | ArrayBuffer | Uint8Array | null;
  source: SourceKind;
  video: DataView | ArrayBuffer | Uint8Array | null;
  device_id: string;
  /** getUserMedia video constraints for the camera, e.g. {facingMode: "environment"} */
  camera: MediaTrackConstraints;
  mirror: boolean;
  signaling: string;
  /** the media transport: "livekit" (Gen-B) or "webrtc" (Gen-A); fixed for the widget's life */
  transport: string;
  /** the output resolution asked of the service ("720p", "1080p"); null: its default */
  resolution: string | null;
  realtime_url: string;
  ice_servers: RTCIceServer[];
  /** what a page on another host than the kernel adds to a media failure ("": nothing; reach.ts) */
  remote_page_help: string;
  autostart: boolean;
  note: string;
  connection_state: ConnectionState;
  generation_seconds: number;
  session_id: string;
  last_error: string;
  last_error_kind: string;
  stats: Stats | Record<string, never>;
  /** the place in the service's queue (1-based) and the queue's length; null when not queued */
  queue_position: number | null;
  queue_size: number | null;
}

export type WidgetModel = AnyModel<WidgetTraits>;

/** Custom messages the kernel sends to the front end. */
export type KernelMessage =
  | { type: "start" }
  | { type: "stop" }
  | { type: "token"; id: number; api_key: string; realtime_url?: string; expires_at?: string }
  | { type: "token_error"; id: number; kind?: string; message?: string }
  // signaling "kernel" (kernel_transport.ts): frames of the connection `id`
  | { type: "signal_opened"; id: number }
  | { type: "signal"; id: number; frame: Record<string, unknown> | string }
  | { type: "signal_closed"; id: number; code: number | null; reason: string }
  // an asset the page loads on demand (asset_loader.ts)
  | { type: "asset"; name: string; hash: string; index: number; count: number }
  | { type: "asset_error"; name: string; kind: string; message: string };

/** Custom messages the front end sends to the kernel. */
export type FrontendMessage =
  | { type: "token_request"; id: number }
  | { type: "ack"; request: "prompt" | "image"; success: boolean; error: string | null; prompt: string | null }
  // signaling "kernel": a set_image's image_data rides as a binary buffer, not in `frame`
  | { type: "signal_open"; id: number; model: string }
  | { type: "signal"; id: number; frame: Record<string, unknown> }
  | { type: "signal_close"; id: number; code: number; reason: string }
  | { type: "asset_request"; name: string };

export const DEFAULT_SPEC: ModelSpec = { name: "lucy-2.1", width: 1088, height: 624, fps: 30 };
