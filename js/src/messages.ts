// Every message of the realtime protocol (docs/protocol.md, "Messages") that the browser speaks.
// `parseServer` turns one text frame into a typed message: unknown types give null (callers
// ignore them), malformed frames throw a ProtocolError saying what is wrong. The builders make
// client messages with every field present, so `encode` is plain JSON.

import { ProtocolError } from "./errors";

type JsonObject = Record<string, unknown>;

export interface IceCandidateInfo {
  candidate: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
  usernameFragment?: string | null;
}

export interface TurnConfig {
  server_url: string;
  username?: string;
  credential?: string;
}

export interface OfferMessage {
  type: "offer";
  sdp: string;
}
export interface IceCandidateMessage {
  type: "ice-candidate";
  candidate: IceCandidateInfo | null;
}
export interface PromptMessage {
  type: "prompt";
  prompt: string;
  enhance_prompt: boolean;
}
export interface SetImageMessage {
  type: "set_image";
  image_data: string | null;
  prompt: string | null;
  enhance_prompt: boolean;
}
/** Gen-B: ask for a LiveKit room; `passthrough: true` when no prompt and no image follow. */
export interface LivekitJoinMessage {
  type: "livekit_join";
  passthrough?: true;
}
export type ClientMessage = OfferMessage | IceCandidateMessage | PromptMessage | SetImageMessage | LivekitJoinMessage;

export interface PromptAckMessage {
  type: "prompt_ack";
  prompt: string;
  success: boolean;
  error: string | null;
}
export interface SetImageAckMessage {
  type: "set_image_ack";
  success: boolean;
  error: string | null;
}
/** Gen-B: the room to join (docs/protocol.md, "The room info"). */
export interface LivekitRoomInfoMessage {
  type: "livekit_room_info";
  livekit_url: string;
  token: string;
  room_name: string | null;
  session_id: string | null;
}

export type ServerMessage =
  | { type: "answer"; sdp: string }
  | { type: "ice-candidate"; candidate: IceCandidateInfo | null }
  | { type: "session_id"; session_id: string; server_ip: string | null; server_port: number | null }
  | PromptAckMessage
  | SetImageAckMessage
  | { type: "generation_started" }
  | { type: "generation_tick"; seconds: number }
  | { type: "generation_ended"; seconds: number; reason: string }
  | { type: "error"; error: string }
  | { type: "queue_position"; position: number; queue_size: number | null }
  | { type: "ice-restart"; turn_config: TurnConfig | null }
  | LivekitRoomInfoMessage;

export { END_REASONS } from "./constants";

// ---- builders (client -> server) ----------------------------------------------------------

export const offer = (sdp: string): OfferMessage => ({ type: "offer", sdp });

export const iceCandidate = (candidate: IceCandidateInfo | null): IceCandidateMessage => ({
  type: "ice-candidate",
  candidate,
});

export const prompt = (text: string, enhance: boolean): PromptMessage => ({
  type: "prompt",
  prompt: text,
  enhance_prompt: enhance,
});

export const setImage = (
  imageData: string | null,
  promptText: string | null,
  enhance: boolean,
): SetImageMessage => ({
  type: "set_image",
  image_data: imageData,
  prompt: promptText,
  enhance_prompt: enhance,
});

export const livekitJoin = (passthrough: boolean): LivekitJoinMessage =>
  passthrough ? { type: "livekit_join", passthrough: true } : { type: "livekit_join" };

export function encode(message: ClientMessage): string {
  return JSON.stringify(message);
}

// ---- parsing (server -> client) -----------------------------------------------------------

function shape(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

function readString(obj: JsonObject, key: string, kind: string): string {
  const value = obj[key];
  if (typeof value !== "string") {
    throw new ProtocolError(`'${kind}' message needs a string '${key}', got ${shape(value)}`);
  }
  return value;
}

function readBoolean(obj: JsonObject, key: string, kind: string): boolean {
  const value = obj[key];
  if (typeof value !== "boolean") {
    throw new ProtocolError(`'${kind}' message needs a boolean '${key}', got ${shape(value)}`);
  }
  return value;
}

function readNumber(obj: JsonObject, key: string, kind: string, fallback?: number): number {
  const value = obj[key] ?? fallback;
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new ProtocolError(`'${kind}' message needs a number '${key}', got ${shape(value)}`);
  }
  return value;
}

const optionalString = (value: unknown): string | null => (typeof value === "string" ? value : null);

const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function readCandidate(obj: JsonObject): IceCandidateInfo | null {
  const value = obj["candidate"];
  if (value === null || value === undefined) return null;
  if (typeof value === "string") {
    // some peers send the bare candidate line with its mid/index beside it
    return {
      candidate: value,
      sdpMid: optionalString(obj["sdpMid"]),
      sdpMLineIndex: typeof obj["sdpMLineIndex"] === "number" ? obj["sdpMLineIndex"] : null,
    };
  }
  if (!isObject(value) || typeof (value["candidate"] ?? "") !== "string") {
    throw new ProtocolError(`'ice-candidate' message: bad candidate ${shape(value)}`);
  }
  return value as unknown as IceCandidateInfo;
}

function errorText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value;
  if (isObject(value)) {
    // some servers nest {"message": ...}
    const inner = value["message"] ?? value["error"];
    if (typeof inner === "string") return inner;
  }
  return JSON.stringify(value);
}

/** Decode one text frame into a JSON object with a string `type`. */
export function decodeObject(frame: string): JsonObject {
  let obj: unknown;
  try {
    obj = JSON.parse(frame);
  } catch (error) {
    throw new ProtocolError(`frame is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(obj)) throw new ProtocolError(`frame must be a JSON object, got ${shape(obj)}`);
  if (typeof obj["type"] !== "string") throw new ProtocolError("frame has no string 'type'");
  return obj;
}

/** Parse a frame the server sent. Returns null for a type this client does not know. */
export function parseServer(frame: string): ServerMessage | null {
  const obj = decodeObject(frame);
  const kind = obj["type"] as string;
  switch (kind) {
    case "answer":
      return { type: kind, sdp: readString(obj, "sdp", kind) };
    case "ice-candidate":
      return { type: kind, candidate: readCandidate(obj) };
    case "session_id": {
      const port = obj["server_port"];
      return {
        type: kind,
        session_id: readString(obj, "session_id", kind),
        server_ip: optionalString(obj["server_ip"]),
        server_port: typeof port === "number" && Number.isInteger(port) ? port : null,
      };
    }
    case "prompt_ack":
      return {
        type: kind,
        prompt: readString(obj, "prompt", kind),
        success: readBoolean(obj, "success", kind),
        error: errorText(obj["error"]),
      };
    case "set_image_ack":
      return { type: kind, success: readBoolean(obj, "success", kind), error: errorText(obj["error"]) };
    case "generation_started":
      return { type: kind };
    case "generation_tick":
      return { type: kind, seconds: readNumber(obj, "seconds", kind) };
    case "generation_ended": {
      const reason = obj["reason"];
      return {
        type: kind,
        seconds: readNumber(obj, "seconds", kind, 0),
        reason: typeof reason === "string" ? reason : "error",
      };
    }
    case "error":
      return { type: kind, error: errorText(obj["error"]) ?? "unknown error" };
    case "queue_position": {
      const size = obj["queue_size"];
      const key = "position" in obj ? "position" : "queue_position"; // the legacy key
      return {
        type: kind,
        position: Math.trunc(readNumber(obj, key, kind)),
        queue_size: typeof size === "number" ? Math.trunc(size) : null,
      };
    }
    case "ice-restart": {
      const turn = obj["turn_config"];
      return {
        type: kind,
        turn_config: isObject(turn) && typeof turn["server_url"] === "string" ? (turn as unknown as TurnConfig) : null,
      };
    }
    case "livekit_room_info":
      return {
        type: kind,
        livekit_url: readString(obj, "livekit_url", kind),
        token: readString(obj, "token", kind),
        room_name: optionalString(obj["room_name"]),
        session_id: optionalString(obj["session_id"]),
      };
    default:
      return null;
  }
}
