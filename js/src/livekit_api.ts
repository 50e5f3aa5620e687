// The seam between the LiveKit media link (livekit_link.ts: what the session needs from a room)
// and npm `livekit-client` (livekit_room.ts: how a room does it), so the link is tested with fake
// rooms. Both are in the LiveKit asset, which widget.js loads only for a Gen-B session
// (lazy_media.ts).

/** How the room's connection goes, as the link needs to know it. */
export type RoomConnection =
  /** the connection dropped; the client is trying to resume it */
  | "reconnecting"
  /** resumed after "reconnecting" */
  | "reconnected"
  /** gone without the link asking (server ended it, resume failed) */
  | "lost";

export interface RoomEvents {
  /** A participant's video track is subscribed. */
  videoTrack(identity: string, track: MediaStreamTrack): void;
  /** That track is gone (unpublished, unsubscribed, participant left). */
  videoTrackGone(identity: string, track: MediaStreamTrack): void;
  connection(state: RoomConnection): void;
}

/** One joined (or joining) room. */
export interface LiveRoom {
  /** Connect to `url` with the room token; `iceServers` (the widget's `ice_servers`), when any,
   * replace the ones the LiveKit server offers. */
  join(url: string, token: string, iceServers: RTCIceServer[]): Promise<void>;
  /** Publish `track` as the camera, or swap it under the existing publication. */
  publish(track: MediaStreamTrack): Promise<void>;
  /** The RTC stats reports of the published and the subscribed video tracks. */
  statsReports(): Promise<RTCStatsReport[]>;
  /** Leave the room; no event fires after this call. */
  close(): Promise<void>;
}

export type CreateRoom = (events: RoomEvents) => LiveRoom;
