// The entry of the WebRTC asset (decart_widget/widget/static/webrtc.js): the Gen-A media
// transport (peer_link.ts over peer.ts), loaded by lazy_media.ts when a WebRTC session starts, so
// widget.js carries neither transport. It is small and asked for while the control socket
// connects (with the first session of the page), before the handshake needs the peer.

import { createBrowserPeer } from "./peer";
import { webrtcMedia } from "./peer_link";

export const { open } = webrtcMedia(createBrowserPeer);
