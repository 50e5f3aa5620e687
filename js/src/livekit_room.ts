// The entry of the LiveKit asset (decart_widget/widget/static/livekit.js, built beside widget.js
// and loaded by lazy_media.ts only when a Gen-B session starts). It exports the media transport
// (`open`, media.ts) of livekit_link.ts over a LiveRoom (livekit_api.ts) on npm
// `livekit-client`, joined and published the way Decart's JS SDK does it (docs/protocol.md,
// "The room"). The decisions (whose video is the output, what a state means for the session)
// stay in livekit_link.ts; this file only translates.

import {
  DisconnectReason,
  type LocalTrackPublication,
  type RemoteParticipant,
  type RemoteTrack,
  Room,
  RoomEvent,
  Track,
} from "livekit-client";
import type { CreateRoom, LiveRoom, RoomEvents } from "./livekit_api";
import { livekitMedia } from "./livekit_link";

/** Decart's JS SDK: H.264 with simulcast, at most 3.5 Mbps and 30 fps. */
const PUBLISH = {
  source: Track.Source.Camera,
  videoCodec: "h264",
  simulcast: true,
  videoEncoding: { maxBitrate: 3_500_000, maxFramerate: 30 },
} as const;

class LiveKitRoom implements LiveRoom {
  private readonly room = new Room({
    adaptiveStream: false,
    dynacast: false,
    // the source belongs to the widget: it outlives the room (reconnects keep the camera)
    stopLocalTrackOnUnpublish: false,
  });
  private publication: LocalTrackPublication | null = null;
  private closed = false;

  constructor(private readonly events: RoomEvents) {
    const video = (track: RemoteTrack, participant: RemoteParticipant, gone: boolean): void => {
      if (this.closed || track.kind !== Track.Kind.Video) return;
      if (gone) events.videoTrackGone(participant.identity, track.mediaStreamTrack);
      else events.videoTrack(participant.identity, track.mediaStreamTrack);
    };
    this.room
      .on(RoomEvent.TrackSubscribed, (track, _publication, participant) => video(track, participant, false))
      .on(RoomEvent.TrackUnsubscribed, (track, _publication, participant) => video(track, participant, true))
      .on(RoomEvent.Reconnecting, () => this.closed || events.connection("reconnecting"))
      .on(RoomEvent.Reconnected, () => this.closed || events.connection("reconnected"))
      .on(RoomEvent.Disconnected, (reason?: DisconnectReason) => {
        if (!this.closed && reason !== DisconnectReason.CLIENT_INITIATED) events.connection("lost");
      });
  }

  async join(url: string, token: string, iceServers: RTCIceServer[]): Promise<void> {
    // livekit-client uses the join response's ICE servers only when rtcConfig names none
    const rtcConfig = iceServers.length ? { iceServers } : undefined;
    await this.room.connect(url, token, { autoSubscribe: true, rtcConfig });
  }

  async publish(track: MediaStreamTrack): Promise<void> {
    const published = this.publication?.track;
    if (published) {
      if (published.mediaStreamTrack !== track) await published.replaceTrack(track, { userProvidedTrack: true });
      return;
    }
    this.publication = await this.room.localParticipant.publishTrack(track, PUBLISH);
  }

  async statsReports(): Promise<RTCStatsReport[]> {
    const tracks: Track[] = [];
    if (this.publication?.track) tracks.push(this.publication.track);
    for (const participant of this.room.remoteParticipants.values()) {
      for (const publication of participant.videoTrackPublications.values()) {
        if (publication.track) tracks.push(publication.track);
      }
    }
    const reports = await Promise.all(tracks.map((track) => track.getRTCStatsReport()));
    return reports.filter((report): report is RTCStatsReport => report !== undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.publication = null;
    await this.room.disconnect(false);
  }
}

const createRoom: CreateRoom = (events) => new LiveKitRoom(events);

export const { open } = livekitMedia(createRoom);
