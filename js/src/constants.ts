// The protocol's numbers and words (docs/protocol.md), from decart_widget/protocol/constants.json:
// the one data file the Python package reads too (decart_widget/protocol/_constants.py). esbuild
// bundles it into widget.js.

import data from "../../decart_widget/protocol/constants.json";

/** Decart's documented limit for a reference image (decoded bytes). */
export const MAX_IMAGE_BYTES: number = data.limits.max_image_bytes;

/** Seconds to wait for a prompt_ack / set_image_ack / the initial state's ack. */
export const PROMPT_ACK_TIMEOUT: number = data.timeouts.prompt_ack;
export const IMAGE_ACK_TIMEOUT: number = data.timeouts.image_ack;
export const INITIAL_ACK_TIMEOUT: number = data.timeouts.initial_ack;
/** Gen-B: seconds from the livekit_join to the livekit_room_info (paused while queued). */
export const ROOM_INFO_TIMEOUT: number = data.timeouts.room_info;
/** Seconds a (re)connect may take, from the socket to a connected peer. */
export const CONNECT_TIMEOUT: number = data.timeouts.connect;
/** Per attempt: seconds for the signaling connection to open, and for the media (ICE, or the
 * room) to connect once started; each well under CONNECT_TIMEOUT (docs/where-it-works.md). */
export const SIGNALING_OPEN_TIMEOUT: number = data.timeouts.signaling_open;
export const MEDIA_CONNECT_TIMEOUT: number = data.timeouts.media_connect;
/** Seconds to wait before each reconnect attempt; its length is the number of retries. */
export const BACKOFF: readonly number[] = data.backoff;
/** The media transports: "webrtc" (Gen-A, SDP over the socket) and "livekit" (Gen-B, a room). */
export const MEDIA_TRANSPORTS = data.media_transports as readonly MediaTransportName[];
export type MediaTransportName = "webrtc" | "livekit";

export const CLOSE_NORMAL: number = data.close_codes.normal;
/** WebSocket close code of "Concurrent session limit reached." */
export const CLOSE_TRY_AGAIN_LATER: number = data.close_codes.try_again_later;
/** The same, as a signaling proxy relays it (application codes must be >= 3000). */
export const CLOSE_PROXY_CONCURRENCY: number = data.close_codes.proxy_concurrency;

/** Every DecartError kind the protocol layer knows. */
export const ERROR_KIND_NAMES: readonly string[] = data.error_kinds;
/** Lower-case fragments of server error texts, by what they mean. */
export const ERROR_MARKERS: Readonly<Record<"permanent" | "model" | "credits" | "concurrency" | "moderation" | "origin", readonly string[]>> =
  data.error_markers;

/** The `reason` values of generation_ended. */
export const END_REASONS: readonly string[] = data.end_reasons;

/** The byte count a base64 text decodes to (no decoding; a data: prefix must be gone). */
export function decodedSize(base64: string): number {
  const padding = base64.endsWith("==") ? 2 : base64.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor((base64.length * 3) / 4) - padding);
}
