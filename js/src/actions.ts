// The actions the session core returns, and the connection state it publishes (the twin of
// decart_widget/protocol/_actions.py). Adapters carry them out in order. Shared by the session
// core (session.ts) and the update queue (update_queue.ts).

import type { DecartError } from "./errors";
import type { ClientMessage, IceCandidateInfo, TurnConfig } from "./messages";

export type ConnectionState = "disconnected" | "connecting" | "connected" | "generating" | "reconnecting";
export type PeerState = "new" | "connecting" | "connected" | "disconnected" | "failed" | "closed";

/** Gen-B: where the session stands in the server's queue. */
export interface QueueStatus {
  position: number;
  size: number | null;
}

export type EmitAction =
  | { kind: "Emit"; name: "generation_tick"; value: number }
  | { kind: "Emit"; name: "session_id"; value: string }
  | { kind: "Emit"; name: "error"; value: DecartError }
  | { kind: "Emit"; name: "generation_ended"; value: string }
  | { kind: "Emit"; name: "queue"; value: QueueStatus | null };

export type Action =
  | { kind: "OpenSocket"; attempt: number }
  | { kind: "CloseSocket"; code: number; reason: string }
  | { kind: "Send"; message: ClientMessage }
  | { kind: "StartPeer" }
  | { kind: "ClosePeer" }
  | { kind: "JoinRoom"; url: string; token: string; roomName: string | null; sessionId: string | null }
  | { kind: "ApplyAnswer"; sdp: string }
  | { kind: "AddRemoteCandidate"; candidate: IceCandidateInfo | null }
  | { kind: "RestartIce"; turnConfig: TurnConfig | null }
  | { kind: "StateChanged"; state: ConnectionState }
  | { kind: "Resolve"; requestId: number; superseded: boolean }
  | { kind: "Fail"; requestId: number; error: DecartError }
  | EmitAction;

export const resolve = (requestId: number, superseded = false): Action => ({ kind: "Resolve", requestId, superseded });
export const fail = (requestId: number, error: DecartError): Action => ({ kind: "Fail", requestId, error });
export const emitError = (error: DecartError): Action => ({ kind: "Emit", name: "error", value: error });
