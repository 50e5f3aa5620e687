// Request bookkeeping for the session core, the twin of decart_widget/protocol/_requests.py.
// The desired state is always derived: `base` (the accepted state, or before the first ack the
// state a session starts from) with the in-flight change applied, then the queued one. So a
// failed or timed-out update "reverts" simply by being dropped, and a reconnect replays exactly
// the latest desired state. cleanPrompt / cleanImage (and promptChange / imageChange, which
// build a request's change with them) check a request's values.

import { MAX_IMAGE_BYTES, decodedSize } from "./constants";
import { InvalidInput } from "./errors";
import * as msg from "./messages";
import type { PromptMessage, SetImageMessage } from "./messages";

/** What the model is (or should be) doing: a prompt and a reference image (raw base64). */
export interface Settings {
  prompt: string | null;
  image: string | null;
}

export const EMPTY: Settings = { prompt: null, image: null };

/** A change of Settings; an absent (undefined) field is kept, null clears it. */
export interface Change {
  prompt?: string | null;
  image?: string | null;
}

const setsPrompt = (change: Change): boolean => change.prompt !== undefined;
const setsImage = (change: Change): boolean => change.image !== undefined;

export function apply(change: Change, settings: Settings): Settings {
  return {
    prompt: setsPrompt(change) ? change.prompt! : settings.prompt,
    image: setsImage(change) ? change.image! : settings.image,
  };
}

/** `older` followed by `newer` (newer fields win). */
export function followedBy(older: Change, newer: Change): Change {
  const merged: Change = {};
  const prompt = setsPrompt(newer) ? newer.prompt : older.prompt;
  const image = setsImage(newer) ? newer.image : older.image;
  if (prompt !== undefined) merged.prompt = prompt;
  if (image !== undefined) merged.image = image;
  return merged;
}

/** True when `newer` sets every field `change` sets (so `change` is superseded). */
function coveredBy(change: Change, newer: Change): boolean {
  return (!setsPrompt(change) || setsPrompt(newer)) && (!setsImage(change) || setsImage(newer));
}

export const sameSettings = (a: Settings, b: Settings): boolean => a.prompt === b.prompt && a.image === b.image;

/** A change waiting to be sent, with the requests (id, own change) that settle with its ack. */
export class Update {
  constructor(
    public change: Change = {},
    public requests: [number, Change][] = [],
  ) {}

  get ids(): number[] {
    return this.requests.map(([id]) => id);
  }

  /** Merge `newer` into this update; return the ids of the requests it superseded. */
  absorb(newer: Update): number[] {
    const superseded = this.requests.filter(([, change]) => coveredBy(change, newer.change)).map(([id]) => id);
    this.requests = [...this.requests.filter(([id]) => !superseded.includes(id)), ...newer.requests];
    this.change = followedBy(this.change, newer.change);
    return superseded;
  }
}

/** An update on the wire, waiting for its ack (identity matters: the image FIFO holds it). */
export class InFlight {
  constructor(
    readonly message: PromptMessage | SetImageMessage,
    readonly update: Update,
    /** when its ack is late (moves on while a Gen-B session waits in the server's queue) */
    public deadline: number,
    readonly initial: boolean,
  ) {}

  /** The server's state once this message is applied on top of `accepted`. A handshake
   * `prompt` starts a fresh server session, so no image. */
  settingsAfter(accepted: Settings): Settings {
    const message = this.message;
    if (message.type === "set_image") return { prompt: message.prompt, image: message.image_data };
    return { prompt: message.prompt, image: this.initial ? null : accepted.image };
  }
}

/**
 * The frame that moves the server to `target`. `full` (the handshake) sends the whole state:
 * image -> set_image with the prompt, else prompt -> prompt, else the passthrough set_image with
 * both null. Otherwise a change that touches the image sends set_image (with the prompt), and a
 * prompt change sends prompt.
 */
export function messageFor(target: Settings, change: Change, enhance: boolean, full: boolean): PromptMessage | SetImageMessage {
  if (full) {
    if (target.image !== null) return msg.setImage(target.image, target.prompt, enhance);
    if (target.prompt !== null) return msg.prompt(target.prompt, enhance);
    return msg.setImage(null, null, enhance);
  }
  if (setsImage(change) || target.prompt === null) return msg.setImage(target.image, target.prompt, enhance);
  return msg.prompt(target.prompt, enhance);
}

/** A prompt, or null for no prompt (null, empty or blank). */
export function cleanPrompt(text: string | null): string | null {
  if (text === null) return null;
  if (typeof text !== "string") throw new InvalidInput(`prompt must be a string or null, got ${typeof text}`);
  return text.trim() ? text : null;
}

/** Raw base64 (a data: URL prefix is stripped), checked against MAX_IMAGE_BYTES. */
export function cleanImage(image: string | null): string | null {
  if (image === null) return null;
  if (typeof image !== "string") throw new InvalidInput(`image must be base64 text or null, got ${typeof image}`);
  let data = image;
  if (data.startsWith("data:")) {
    const comma = data.indexOf(",");
    if (comma < 0 || !data.slice(0, comma).endsWith(";base64")) {
      throw new InvalidInput("an image data URL must be base64-encoded");
    }
    data = data.slice(comma + 1);
  }
  data = data.trim();
  if (!data) throw new InvalidInput("image is empty (use null to clear it)");
  const size = decodedSize(data);
  if (size > MAX_IMAGE_BYTES) {
    throw new InvalidInput(`image is ${(size / 2 ** 20).toFixed(1)} MiB; the limit is ${MAX_IMAGE_BYTES / 2 ** 20} MiB`);
  }
  return data;
}

/** A set_prompt's change: the prompt, or null to clear it; a blank one is InvalidInput. */
export function promptChange(text: string | null): Change {
  if (text !== null && typeof text === "string" && !text.trim()) throw new InvalidInput("prompt is empty (use null to clear it)");
  return { prompt: cleanPrompt(text) };
}

/** A set_image's change: the image, or null to clear it; the prompt kept (undefined, null) or set
 * (a blank one clears it). */
export function imageChange(image: string | null, prompt?: string | null): Change {
  const change: Change = { image: cleanImage(image) };
  if (prompt !== undefined && prompt !== null) change.prompt = cleanPrompt(prompt);
  return change;
}
